//! Devices: PCI discovery and the drivers the kernel has (virtio-blk).
pub mod virtio_blk;

/// Finds and starts every device the kernel drives (at boot, after interrupts are set up).
pub fn init() {
    virtio_blk::probe();
}
