//! Splitting a video between workers: each shard writes a contiguous run of frames, but starts
//! stylising a few frames earlier and throws those away, so that its first written frame follows
//! a sequence that has settled (a first frame, stylised from its content alone, differs from
//! the frames the temporal loss then holds to it) and the join with the previous shard does not
//! jump.

use std::ops::Range;

/// For a shard that writes the frames `own` (e.g. [`Shard::range`](crate::batch::Shard::range)
/// of the frame count), the frames it stylises and the frames it writes: it starts `warmup`
/// frames earlier (fewer at the video's start) and writes only its own. An empty shard
/// stylises nothing.
pub fn shard_frames(own: Range<usize>, warmup: usize) -> (Range<usize>, Range<usize>) {
    if own.is_empty() {
        return (own.clone(), own);
    }
    (own.start.saturating_sub(warmup)..own.end, own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_start_early_and_write_only_their_own_frames() {
        assert_eq!(shard_frames(0..10, 4), (0..10, 0..10));
        assert_eq!(shard_frames(10..20, 4), (6..20, 10..20));
        assert_eq!(shard_frames(2..5, 4), (0..5, 2..5));
        assert_eq!(shard_frames(7..7, 4), (7..7, 7..7));
        assert_eq!(shard_frames(10..20, 0), (10..20, 10..20));
        // Every frame written exactly once across shards, whatever the warm-up.
        let cuts = [0, 7, 13, 20];
        let mut seen = [0; 20];
        for w in cuts.windows(2) {
            let (processed, written) = shard_frames(w[0]..w[1], 5);
            assert!(processed.start <= written.start && processed.end == written.end);
            for f in written {
                seen[f] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
    }
}
