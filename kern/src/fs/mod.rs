//! File systems: the boot ramdisk (a read-only tar archive of user programs and graft blobs,
//! where programs are loaded from, so the kernel boots without a disk), and the disk file
//! system (ext2 on the first virtio disk, mounted at `/`) with each process's open files.
pub mod readahead;

#[cfg(all(target_os = "none", feature = "bench"))]
pub mod bench;
#[cfg(target_os = "none")]
pub mod disk;
#[cfg(target_os = "none")]
pub mod files;
#[cfg(target_os = "none")]
pub mod graft_view;
#[cfg(target_os = "none")]
pub mod ramdisk;
