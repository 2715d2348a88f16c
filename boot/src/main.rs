//! `boot`: the host side of running the kernel.
//!
//! `boot image KERNEL OUT` builds a BIOS disk image from the kernel ELF; `boot run IMAGE` boots it
//! in QEMU with the serial console on stdout, a time-out, and QEMU killed if we are. The guest
//! reports its verdict through the `isa-debug-exit` device: status 33 is success, anything else
//! (35, a crash, a hang) is a failure.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod qemu;
mod testlog;

#[derive(Parser)]
#[command(about = "Build the kernel's disk image and run it in QEMU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a BIOS-bootable disk image from the kernel ELF.
    Image {
        /// The kernel ELF (built for x86_64-unknown-none).
        kernel: PathBuf,
        /// Where to write the disk image.
        out: PathBuf,
        /// A file the bootloader loads for the kernel (our tar archive of programs and grafts).
        #[arg(long)]
        ramdisk: Option<PathBuf>,
    },
    /// Boot a disk image in QEMU with the serial console on stdout.
    Run(qemu::RunArgs),
    /// Check that sectors of a disk image hold the test pattern the kernel's disk test writes.
    CheckPattern {
        /// The raw disk image.
        image: PathBuf,
        /// The pattern's seed (as the kernel's test used it).
        #[arg(long)]
        seed: u32,
        /// First sector.
        #[arg(long)]
        first: u64,
        /// Number of sectors.
        #[arg(long)]
        count: u64,
    },
    /// Write a file of `bytes` bytes holding the sector test pattern of `seed` (storage::pattern),
    /// for the guest to read and check.
    FillPattern {
        file: PathBuf,
        #[arg(long)]
        seed: u32,
        #[arg(long)]
        bytes: u64,
    },
    /// Decrypt a file the guest wrote through the XTEA write filter (sample-grafts/
    /// xtea_write_filter.graft: XTEA-CTR, its key and nonce) and check it is fsgrafts's text.
    CheckXtea { file: PathBuf },
    /// Check that a file read back from the guest's disk holds `bytes` bytes of the storage test
    /// pattern of `seed` (what crashtest wrote and fsynced).
    CheckSeeded {
        file: PathBuf,
        #[arg(long)]
        seed: u32,
        #[arg(long)]
        bytes: usize,
    },
    /// Check that a file read back from the guest's disk holds fstest's pattern: `len` bytes,
    /// byte i = (i * 7 + i / 1000) % 256.
    CheckFilePattern {
        file: PathBuf,
        #[arg(long)]
        len: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Image { kernel, out, ramdisk } => {
            if !kernel.is_file() {
                eprintln!("boot: kernel ELF {} not found", kernel.display());
                return ExitCode::from(1);
            }
            // The bootloader's own progress lines would drown the kernel's console: warnings only.
            let mut config = bootloader::BootConfig::default();
            config.log_level = bootloader_boot_config::LevelFilter::Warn;
            config.frame_buffer_logging = false;
            let mut boot = bootloader::BiosBoot::new(&kernel);
            boot.set_boot_config(&config);
            if let Some(r) = &ramdisk {
                if !r.is_file() {
                    eprintln!("boot: ramdisk {} not found", r.display());
                    return ExitCode::from(1);
                }
                boot.set_ramdisk(r);
            }
            match boot.create_disk_image(&out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("boot: creating {} failed: {e:#}", out.display());
                    ExitCode::from(1)
                }
            }
        }
        Command::Run(args) => qemu::run(&args),
        Command::CheckPattern { image, seed, first, count } => check_pattern(&image, seed, first, count),
        Command::CheckFilePattern { file, len } => check_file_pattern(&file, len),
        Command::FillPattern { file, seed, bytes } => {
            let mut data = vec![0u8; bytes as usize];
            storage::pattern::fill(seed, 0, &mut data);
            match std::fs::write(&file, &data) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("boot: writing {}: {e}", file.display());
                    ExitCode::from(1)
                }
            }
        }
        Command::CheckXtea { file } => check_xtea(&file),
        Command::CheckSeeded { file, seed, bytes } => {
            let data = std::fs::read(&file).unwrap_or_default();
            if data.len() == bytes && storage::pattern::first_mismatch(seed, 0, &data).is_none() {
                println!("host: {} holds its {bytes} bytes as the guest wrote them", file.display());
                ExitCode::SUCCESS
            } else {
                eprintln!("host: {} holds {} bytes, not the {bytes} bytes the guest wrote and fsynced", file.display(), data.len());
                ExitCode::from(1)
            }
        }
    }
}

fn check_pattern(image: &std::path::Path, seed: u32, first: u64, count: u64) -> ExitCode {
    use std::io::{Read, Seek, SeekFrom};
    const SECTOR: u64 = storage::block::SECTOR_SIZE as u64;
    let mut data = vec![0u8; (count * SECTOR) as usize];
    let read = std::fs::File::open(image).and_then(|mut f| {
        f.seek(SeekFrom::Start(first * SECTOR))?;
        f.read_exact(&mut data)
    });
    if let Err(e) = read {
        eprintln!("boot: reading sectors {first}..{} of {}: {e}", first + count, image.display());
        return ExitCode::from(1);
    }
    match storage::pattern::first_mismatch(seed, first, &data) {
        None => {
            println!("host: {} sectors {first}..{} hold the guest's pattern", image.display(), first + count);
            ExitCode::SUCCESS
        }
        Some(s) => {
            eprintln!("host: sector {s} of {} does not hold the pattern the guest wrote", image.display());
            ExitCode::from(1)
        }
    }
}

/// fstest's file pattern (user/programs/src/bin/fstest.rs writes it).
fn file_pattern_byte(i: usize) -> u8 {
    ((i * 7 + i / 1000) % 256) as u8
}

fn check_file_pattern(file: &std::path::Path, len: usize) -> ExitCode {
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("boot: reading {}: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    if data.len() != len {
        eprintln!("host: {} holds {} bytes, the guest wrote {len}", file.display(), data.len());
        return ExitCode::from(1);
    }
    match data.iter().enumerate().position(|(i, &b)| b != file_pattern_byte(i)) {
        None => {
            println!("host: debugfs cat of the guest's {len}-byte pattern file: byte for byte as written");
            ExitCode::SUCCESS
        }
        Some(i) => {
            eprintln!("host: byte {i} of {} differs from what the guest wrote", file.display());
            ExitCode::from(1)
        }
    }
}

/// XTEA (64-bit block, 32 cycles) as `sample-grafts/xtea_write_filter.graft` computes it: an
/// independent implementation, the host's oracle for what the guest's graft wrote.
fn xtea(key: [u32; 4], block: u64) -> u64 {
    let (mut v0, mut v1) = (block as u32, (block >> 32) as u32);
    let delta = 0x9E37_79B9u32;
    let mut sum = 0u32;
    for _ in 0..32 {
        v0 = v0.wrapping_add((((v1 << 4) ^ (v1 >> 5)).wrapping_add(v1)) ^ sum.wrapping_add(key[(sum & 3) as usize]));
        sum = sum.wrapping_add(delta);
        v1 = v1.wrapping_add((((v0 << 4) ^ (v0 >> 5)).wrapping_add(v0)) ^ sum.wrapping_add(key[((sum >> 11) & 3) as usize]));
    }
    (u64::from(v1) << 32) | u64::from(v0)
}

fn check_xtea(file: &std::path::Path) -> ExitCode {
    // The graft's globals `key` and `nonce`.
    const KEY: [u32; 4] = [0x0123_4567, 0x89ab_cdef, 0xfedc_ba98, 0x7654_3210];
    const NONCE: u64 = 0x5eed_0000_0000_0000;
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("boot: reading {}: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    let text: Vec<u8> = (0..100).flat_map(|i| format!("line {i:04}: attack at dawn\n").into_bytes()).collect();
    if data.len() != text.len() {
        eprintln!("host: {} holds {} bytes; the guest wrote {} bytes of text", file.display(), data.len(), text.len());
        return ExitCode::from(1);
    }
    if data == text {
        eprintln!("host: {} holds the plaintext: the write filter did not encrypt it", file.display());
        return ExitCode::from(1);
    }
    let plain: Vec<u8> = data
        .iter()
        .enumerate()
        .map(|(p, &c)| c ^ (xtea(KEY, NONCE ^ (p as u64 / 8)) >> ((p % 8) * 8)) as u8)
        .collect();
    if plain == text {
        println!("host: {} is ciphertext on the disk and decrypts (XTEA-CTR, the graft's key) to the guest's text", file.display());
        ExitCode::SUCCESS
    } else {
        eprintln!("host: {} does not decrypt to the guest's text", file.display());
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    /// The host's XTEA-CTR gives what the graft gives (the sample's own expectation, checked
    /// by graftc's sample tests on the JIT and the interpreter).
    #[test]
    fn host_xtea_matches_the_graft() {
        const KEY: [u32; 4] = [0x0123_4567, 0x89ab_cdef, 0xfedc_ba98, 0x7654_3210];
        const NONCE: u64 = 0x5eed_0000_0000_0000;
        let text = b"attack_at_dawn!!";
        let out: Vec<u8> = text
            .iter()
            .enumerate()
            .map(|(p, &c)| c ^ (super::xtea(KEY, NONCE ^ (p as u64 / 8)) >> ((p % 8) * 8)) as u8)
            .collect();
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "9fa0afaad54e936ca959235235d5bae9");
    }
}
