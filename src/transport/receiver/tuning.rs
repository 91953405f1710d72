//! Sizes of the io_uring receiver's provided-buffer pool, and fitting the
//! pool into `maxReceiveMemory`.

use super::{BUFFER_SIZE, MAX_BUFFERS, RING_BUFFERS};

/// Test and tuning knobs of the io_uring receiver.
#[derive(Debug, Clone, Copy)]
pub struct UringRxTuning {
    /// Provided buffers in the ring (a power of two).
    pub ring_buffers: u16,
    /// Size of each provided buffer.
    pub buffer_size: usize,
    /// Most buffers allocated (provided plus lent).
    pub max_buffers: usize,
    /// Ask for incremental buffer consumption (kernel 6.12+), so a frame
    /// received in two pieces is usually contiguous in one buffer.
    pub incremental: bool,
}

impl Default for UringRxTuning {
    fn default() -> Self {
        UringRxTuning {
            ring_buffers: RING_BUFFERS,
            buffer_size: BUFFER_SIZE,
            max_buffers: MAX_BUFFERS,
            incremental: true,
        }
    }
}

/// Fits the provided-buffer pool into `maxReceiveMemory`: at most what is
/// left after one largest frame (at least 8 buffers), so that the pool and
/// the frames in progress together stay within the bound.
pub(super) fn fit_pool(mut t: UringRxTuning, cfg: &crate::config::Config) -> UringRxTuning {
    let left = cfg
        .rx_limits
        .max_receive_memory
        .saturating_sub(cfg.max_frame_size);
    let most = (left / t.buffer_size.max(1)).max(8);
    t.max_buffers = t.max_buffers.min(most);
    let ring = (t.ring_buffers as usize).min(t.max_buffers);
    // The ring's size is a power of two.
    t.ring_buffers = 1 << (usize::BITS - 1 - ring.max(1).leading_zeros());
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn pool_fits_in_receive_memory_beside_one_largest_frame() {
        let cfg = Config::default();
        // 256 MiB: the default pool (128 × 1 MiB) fits as it is.
        let t = fit_pool(UringRxTuning::default(), &cfg);
        assert_eq!((t.max_buffers, t.ring_buffers), (128, 4));
        let mut cfg = Config::default();
        cfg.rx_limits.max_receive_memory = 32 << 20;
        let t = fit_pool(UringRxTuning::default(), &cfg);
        assert_eq!((t.max_buffers, t.ring_buffers), (16, 4));
        let t = fit_pool(
            UringRxTuning {
                ring_buffers: 32,
                ..UringRxTuning::default()
            },
            &cfg,
        );
        assert_eq!(
            (t.max_buffers, t.ring_buffers),
            (16, 16),
            "ring within the pool"
        );
        cfg.rx_limits.max_receive_memory = 20 << 20;
        let t = fit_pool(UringRxTuning::default(), &cfg);
        assert_eq!(
            (t.max_buffers, t.ring_buffers),
            (8, 4),
            "never below 8 buffers"
        );
    }
}
