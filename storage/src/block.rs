//! The block-device interface the cache drives, and a RAM-backed device for host tests.
//!
//! A device is addressed in 512-byte sectors. Requests are asynchronous: `submit_read` and
//! `submit_write` hand the device an owned buffer and return a [`RequestToken`] at once; the
//! request finishes later and is collected with [`BlockDevice::poll_completion`], which gives the
//! buffer back. The kernel's virtio-blk driver calls `poll_completion` from its interrupt path
//! (through the cache); host tests call it in a loop. Owned buffers mean nothing borrows cache
//! memory while a request is in flight, so the cache's lock can be dropped during the wait.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Bytes per device sector.
pub const SECTOR_SIZE: usize = 512;

/// Names one submitted request until its completion is collected. Unique per device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestToken(pub u64);

impl fmt::Display for RequestToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req{}", self.0)
    }
}

/// Direction of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
}

/// Why a device refused or failed a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// The request reaches past the end of the device.
    OutOfRange { sector: u64, sectors: u64 },
    /// The buffer is empty or not a whole number of sectors.
    BadBuffer { len: usize },
    /// The device's queue is full: collect a completion, then submit again.
    QueueFull,
    /// The device reported a failed transfer.
    Failed { sector: u64 },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange { sector, sectors } => {
                write!(f, "request for {sectors} sectors at {sector} is past the end of the device")
            }
            Self::BadBuffer { len } => write!(f, "buffer of {len} bytes is not whole sectors"),
            Self::QueueFull => write!(f, "device queue full"),
            Self::Failed { sector } => write!(f, "device failed a transfer at sector {sector}"),
        }
    }
}

/// A finished request, with its buffer handed back (filled, for a read).
#[derive(Debug)]
pub struct Completion {
    pub token: RequestToken,
    pub operation: Operation,
    pub sector: u64,
    pub buffer: Vec<u8>,
    pub result: Result<(), DeviceError>,
}

/// An asynchronous disk with several requests in flight.
pub trait BlockDevice {
    /// Size of the device in sectors.
    fn sector_count(&self) -> u64;
    /// Starts reading `buffer.len() / SECTOR_SIZE` sectors from `sector` into `buffer`.
    fn submit_read(&mut self, sector: u64, buffer: Vec<u8>) -> Result<RequestToken, DeviceError>;
    /// Starts writing `buffer` to the sectors from `sector`.
    fn submit_write(&mut self, sector: u64, buffer: Vec<u8>) -> Result<RequestToken, DeviceError>;
    /// Collects one finished request, if any. Never blocks.
    fn poll_completion(&mut self) -> Option<Completion>;
}

fn check_request(sector: u64, len: usize, sector_count: u64) -> Result<(), DeviceError> {
    if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
        return Err(DeviceError::BadBuffer { len });
    }
    let sectors = (len / SECTOR_SIZE) as u64;
    match sector.checked_add(sectors) {
        Some(end) if end <= sector_count => Ok(()),
        _ => Err(DeviceError::OutOfRange { sector, sectors }),
    }
}

struct PendingRequest {
    token: RequestToken,
    operation: Operation,
    sector: u64,
    buffer: Vec<u8>,
    /// Polls left before this request may complete.
    polls_left: u32,
}

/// Counters a test asserts on (how many requests reached the device).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    pub reads_submitted: u64,
    pub writes_submitted: u64,
    pub sectors_read: u64,
    pub sectors_written: u64,
}

/// A disk held in memory. The transfer happens when the request completes, not when it is
/// submitted, so that a test sees the same ordering hazards as on a real disk. A request completes
/// after `completion_delay` calls to `poll_completion`; `queue_depth` bounds the requests in
/// flight (`QueueFull` beyond it), as a virtqueue does.
pub struct RamDisk {
    data: Vec<u8>,
    pending: VecDeque<PendingRequest>,
    next_token: u64,
    completion_delay: u32,
    queue_depth: usize,
    /// Sectors whose transfers fail (for error-path tests).
    failing_sector: Option<u64>,
    stats: DeviceStats,
}

impl RamDisk {
    /// A zero-filled disk of `sectors` sectors.
    pub fn new(sectors: u64) -> Self {
        let len = usize::try_from(sectors).unwrap_or(0).saturating_mul(SECTOR_SIZE);
        Self::from_bytes(vec![0; len])
    }

    /// A disk holding `image`; a trailing partial sector is not addressable.
    pub fn from_bytes(image: Vec<u8>) -> Self {
        Self {
            data: image,
            pending: VecDeque::new(),
            next_token: 1,
            completion_delay: 0,
            queue_depth: 64,
            failing_sector: None,
            stats: DeviceStats::default(),
        }
    }

    /// Requests complete only after this many polls (0: at the first poll).
    pub fn with_completion_delay(mut self, polls: u32) -> Self {
        self.completion_delay = polls;
        self
    }

    /// At most `depth` requests in flight (at least 1).
    pub fn with_queue_depth(mut self, depth: usize) -> Self {
        self.queue_depth = depth.max(1);
        self
    }

    /// Every transfer touching `sector` fails.
    pub fn fail_sector(&mut self, sector: Option<u64>) {
        self.failing_sector = sector;
    }

    pub fn stats(&self) -> DeviceStats {
        self.stats
    }

    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// The disk's contents; requests still in flight are dropped.
    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }

    fn submit(
        &mut self,
        operation: Operation,
        sector: u64,
        buffer: Vec<u8>,
    ) -> Result<RequestToken, DeviceError> {
        check_request(sector, buffer.len(), self.sector_count())?;
        if self.pending.len() >= self.queue_depth {
            return Err(DeviceError::QueueFull);
        }
        let token = RequestToken(self.next_token);
        self.next_token += 1;
        let sectors = (buffer.len() / SECTOR_SIZE) as u64;
        match operation {
            Operation::Read => {
                self.stats.reads_submitted += 1;
                self.stats.sectors_read += sectors;
            }
            Operation::Write => {
                self.stats.writes_submitted += 1;
                self.stats.sectors_written += sectors;
            }
        }
        self.pending.push_back(PendingRequest {
            token,
            operation,
            sector,
            buffer,
            polls_left: self.completion_delay,
        });
        Ok(token)
    }

    fn transfer(&mut self, request: &mut PendingRequest) -> Result<(), DeviceError> {
        let sectors = (request.buffer.len() / SECTOR_SIZE) as u64;
        if let Some(bad) = self.failing_sector
            && bad >= request.sector && bad < request.sector + sectors {
                return Err(DeviceError::Failed { sector: bad });
            }
        // Checked at submission against the same, unchanging length.
        let start = request.sector as usize * SECTOR_SIZE;
        let range = start..start + request.buffer.len();
        let disk = self
            .data
            .get_mut(range)
            .ok_or(DeviceError::OutOfRange { sector: request.sector, sectors })?;
        match request.operation {
            Operation::Read => request.buffer.copy_from_slice(disk),
            Operation::Write => disk.copy_from_slice(&request.buffer),
        }
        Ok(())
    }
}

impl BlockDevice for RamDisk {
    fn sector_count(&self) -> u64 {
        (self.data.len() / SECTOR_SIZE) as u64
    }

    fn submit_read(&mut self, sector: u64, buffer: Vec<u8>) -> Result<RequestToken, DeviceError> {
        self.submit(Operation::Read, sector, buffer)
    }

    fn submit_write(&mut self, sector: u64, buffer: Vec<u8>) -> Result<RequestToken, DeviceError> {
        self.submit(Operation::Write, sector, buffer)
    }

    fn poll_completion(&mut self) -> Option<Completion> {
        let ready = self.pending.iter().position(|r| r.polls_left == 0);
        let Some(index) = ready else {
            for request in self.pending.iter_mut() {
                request.polls_left -= 1;
            }
            return None;
        };
        let mut request = self.pending.remove(index)?;
        let result = self.transfer(&mut request);
        Some(Completion {
            token: request.token,
            operation: request.operation,
            sector: request.sector,
            buffer: request.buffer,
            result,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_complete_after_the_delay_and_transfer_then() {
        let mut disk = RamDisk::new(8).with_completion_delay(2);
        let write = disk.submit_write(1, vec![7; SECTOR_SIZE]).unwrap();
        assert!(disk.poll_completion().is_none());
        assert!(disk.poll_completion().is_none());
        // Not yet transferred while in flight.
        assert_eq!(disk.bytes()[SECTOR_SIZE], 0);
        let done = disk.poll_completion().unwrap();
        assert_eq!(done.token, write);
        assert_eq!(done.result, Ok(()));
        assert_eq!(disk.bytes()[SECTOR_SIZE], 7);
        let read = disk.submit_read(1, vec![0; SECTOR_SIZE]).unwrap();
        let done = (0..10).find_map(|_| disk.poll_completion()).unwrap();
        assert_eq!(done.token, read);
        assert!(done.buffer.iter().all(|&b| b == 7));
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut disk = RamDisk::new(4).with_queue_depth(1);
        assert_eq!(
            disk.submit_read(3, vec![0; 2 * SECTOR_SIZE]),
            Err(DeviceError::OutOfRange { sector: 3, sectors: 2 })
        );
        assert_eq!(disk.submit_read(0, vec![0; 100]), Err(DeviceError::BadBuffer { len: 100 }));
        disk.submit_read(0, vec![0; SECTOR_SIZE]).unwrap();
        assert_eq!(disk.submit_read(1, vec![0; SECTOR_SIZE]), Err(DeviceError::QueueFull));
        assert_eq!(disk.stats().reads_submitted, 1);
    }
}
