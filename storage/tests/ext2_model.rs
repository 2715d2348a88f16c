//! Random sequences of operations against a model of the tree; afterwards `e2fsck -fn` must pass
//! and `debugfs rdump` of the image must equal the model, file by file.

mod common;

use std::collections::BTreeMap;

use common::*;
use storage::ext2::Error;

#[derive(Clone, Debug, PartialEq)]
enum Node {
    File(Vec<u8>),
    Dir,
}

struct Model {
    nodes: BTreeMap<String, Node>,
}

fn parent(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => path[..i].to_string(),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" { format!("/{name}") } else { format!("{dir}/{name}") }
}

impl Model {
    fn children(&self, dir: &str) -> Vec<String> {
        let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
        self.nodes
            .keys()
            .filter(|k| k.starts_with(&prefix) && k.len() > prefix.len() && !k[prefix.len()..].contains('/'))
            .cloned()
            .collect()
    }

    fn dirs(&self) -> Vec<String> {
        self.nodes.iter().filter(|(_, n)| **n == Node::Dir).map(|(k, _)| k.clone()).collect()
    }

    fn files(&self) -> Vec<String> {
        self.nodes.iter().filter(|(_, n)| matches!(n, Node::File(_))).map(|(k, _)| k.clone()).collect()
    }

    /// Moves `from` (and, for a directory, everything under it) to `to`.
    fn rename(&mut self, from: &str, to: &str) {
        let moved: Vec<(String, Node)> = self
            .nodes
            .iter()
            .filter(|(k, _)| *k == from || k.starts_with(&format!("{from}/")))
            .map(|(k, n)| (k.clone(), n.clone()))
            .collect();
        self.nodes.remove(to);
        for (k, _) in &moved {
            self.nodes.remove(k);
        }
        for (k, n) in moved {
            self.nodes.insert(format!("{to}{}", &k[from.len()..]), n);
        }
    }
}

fn pick<'a>(rng: &mut Rng, list: &'a [String]) -> Option<&'a String> {
    if list.is_empty() { None } else { Some(&list[rng.below(list.len() as u64) as usize]) }
}

/// Returns how many operations answered `NoSpace`.
fn run(block_size: u32, size_kib: u64, seed: u64, steps: usize) -> usize {
    let image = make_image(block_size, size_kib, &[], &[]);
    let mut fs = mount_with(image, 64, 2).unwrap();
    let mut model = Model { nodes: BTreeMap::from([("/".to_string(), Node::Dir)]) };
    model.nodes.insert("/lost+found".to_string(), Node::Dir);
    let mut rng = Rng(seed);
    let mut no_space = 0;
    for step in 0..steps {
        let dirs = model.dirs();
        let files = model.files();
        let dir = pick(&mut rng, &dirs).unwrap().clone();
        let name = if rng.below(2) == 0 { format!("f{}", rng.below(6)) } else { format!("d{}", rng.below(3)) };
        let path = join(&dir, &name);
        match rng.below(10) {
            0 | 1 => {
                let expect = if model.nodes.contains_key(&path) { Err(Error::Exists) } else { Ok(()) };
                let got = fs.create_path(&path, 0o644).map(|_| ());
                if got == Err(Error::NoSpace) && expect.is_ok() {
                    no_space += 1;
                    continue;
                }
                assert_eq!(got, expect, "step {step}: create {path}");
                if expect.is_ok() {
                    model.nodes.insert(path, Node::File(Vec::new()));
                }
            }
            2 | 3 => {
                let Some(file) = pick(&mut rng, &files).cloned() else { continue };
                let Some(Node::File(data)) = model.nodes.get_mut(&file) else { unreachable!() };
                let offset = rng.below(data.len() as u64 + 20_000) as usize;
                let len = rng.below(40_000) as usize;
                let bytes = rng.bytes(len);
                let ino = fs.lookup(&file).unwrap();
                let free = fs.stats();
                match fs.write(ino, offset as u64, &bytes) {
                    Ok(n) => assert_eq!(n, bytes.len(), "step {step}"),
                    Err(Error::NoSpace) => {
                        // Nothing changed: not the file, not the free counts.
                        no_space += 1;
                        assert_eq!(fs.stats(), free, "step {step}");
                        assert_eq!(&read_all(&mut fs, ino), data, "step {step}");
                        continue;
                    }
                    Err(e) => panic!("step {step}: write {file}: {e}"),
                }
                if !bytes.is_empty() {
                    if data.len() < offset + bytes.len() {
                        data.resize(offset + bytes.len(), 0);
                    }
                    data[offset..offset + bytes.len()].copy_from_slice(&bytes);
                }
            }
            4 => {
                let Some(file) = pick(&mut rng, &files).cloned() else { continue };
                let Some(Node::File(data)) = model.nodes.get_mut(&file) else { unreachable!() };
                let size = rng.below(data.len() as u64 * 3 / 2 + 2) as usize;
                let ino = fs.lookup(&file).unwrap();
                fs.truncate(ino, size as u64).unwrap();
                data.resize(size, 0);
            }
            5 => {
                let Some(file) = pick(&mut rng, &files).cloned() else { continue };
                let Some(Node::File(data)) = model.nodes.get(&file) else { unreachable!() };
                let ino = fs.lookup(&file).unwrap();
                assert_eq!(&read_all(&mut fs, ino), data, "step {step}: read {file}");
                fs.unlink_path(&file).unwrap();
                model.nodes.remove(&file);
            }
            6 => {
                let expect = if model.nodes.contains_key(&path) { Err(Error::Exists) } else { Ok(()) };
                let got = fs.mkdir_path(&path, 0o755).map(|_| ());
                if got == Err(Error::NoSpace) && expect.is_ok() {
                    no_space += 1;
                    continue;
                }
                assert_eq!(got, expect, "step {step}: mkdir {path}");
                if expect.is_ok() {
                    model.nodes.insert(path, Node::Dir);
                }
            }
            7 => {
                let Some(target) = pick(&mut rng, &dirs).cloned() else { continue };
                if target == "/" || target == "/lost+found" {
                    continue;
                }
                let expect = if model.children(&target).is_empty() { Ok(()) } else { Err(Error::NotEmpty) };
                assert_eq!(fs.rmdir_path(&target), expect, "step {step}: rmdir {target}");
                if expect.is_ok() {
                    model.nodes.remove(&target);
                }
            }
            _ => {
                let all: Vec<String> =
                    model.nodes.keys().filter(|k| *k != "/" && *k != "/lost+found").cloned().collect();
                let Some(from) = pick(&mut rng, &all).cloned() else { continue };
                let to = path;
                let from_is_dir = model.nodes[&from] == Node::Dir;
                let expect = if to == from {
                    Ok(())
                } else if from_is_dir && (to.starts_with(&format!("{from}/"))) {
                    Err(Error::InvalidArgument { what: "cannot move a directory into itself" })
                } else if from.starts_with(&format!("{to}/")) {
                    // Over one of its own ancestors: that directory is not empty.
                    Err(if from_is_dir { Error::NotEmpty } else { Error::IsADirectory })
                } else {
                    match (from_is_dir, model.nodes.get(&to)) {
                        (_, None) => Ok(()),
                        (true, Some(Node::File(_))) => Err(Error::NotADirectory),
                        (false, Some(Node::Dir)) => Err(Error::IsADirectory),
                        (true, Some(Node::Dir)) if !model.children(&to).is_empty() => Err(Error::NotEmpty),
                        _ => Ok(()),
                    }
                };
                let got = fs.rename_path(&from, &to);
                if got == Err(Error::NoSpace) && expect.is_ok() {
                    no_space += 1;
                    continue;
                }
                assert_eq!(got, expect, "step {step}: rename {from} -> {to}");
                if expect.is_ok() && from != to {
                    model.rename(&from, &to);
                }
                assert!(model.nodes.contains_key(&parent(&to)));
            }
        }
    }
    // Everything reads back through the file system before the image is checked.
    for file in model.files() {
        let Some(Node::File(data)) = model.nodes.get(&file) else { unreachable!() };
        let ino = fs.lookup(&file).unwrap();
        assert_eq!(&read_all(&mut fs, ino), data, "{file}");
    }
    let bytes: usize = model.nodes.values().map(|n| if let Node::File(d) = n { d.len() } else { 0 }).sum();
    eprintln!(
        "{} files, {} directories, {bytes} bytes, {no_space} NoSpace answers, {:?}",
        model.files().len(),
        model.dirs().len(),
        fs.stats()
    );
    // The run must have built something worth checking.
    assert!(model.files().len() >= 5 && model.dirs().len() >= 4 && bytes > 100_000);
    let image = unmount(fs);
    fsck(&image);

    let tmp = TempDir::new("rdump");
    let img = tmp.path().join("fs.img");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(&img, &image).unwrap();
    let status = std::process::Command::new("/usr/sbin/debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", out.display()))
        .arg(&img)
        .output()
        .unwrap();
    assert!(status.status.success());
    let mut dumped = BTreeMap::new();
    let mut stack = vec![out.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let rel = format!("/{}", entry.path().strip_prefix(&out).unwrap().display());
            if entry.file_type().unwrap().is_dir() {
                dumped.insert(rel, Node::Dir);
                stack.push(entry.path());
            } else {
                dumped.insert(rel, Node::File(std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    dumped.insert("/".to_string(), Node::Dir);
    assert_eq!(dumped.len(), model.nodes.len());
    for (path, node) in &model.nodes {
        assert!(dumped.get(path) == Some(node), "{path} differs between debugfs and the model");
    }
    no_space
}

#[test]
fn random_operations_match_a_model_1k() {
    run(1024, 8 * 1024, 0xA11C_E5ED_0001, 2000);
}

#[test]
fn random_operations_match_a_model_4k() {
    run(4096, 8 * 1024, 0xA11C_E5ED_0004, 2000);
}

/// A disk small enough to fill: `NoSpace` answers leave the tree as it was.
#[test]
fn random_operations_on_a_full_disk() {
    let no_space = run(1024, 1536, 0xF011_0001, 3000);
    assert!(no_space > 10, "the disk never filled ({no_space} NoSpace answers)");
}
