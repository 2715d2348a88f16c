//! File systems. For now, the ramdisk the bootloader hands over: a read-only tar archive of user
//! programs and graft blobs.
pub mod ramdisk;
