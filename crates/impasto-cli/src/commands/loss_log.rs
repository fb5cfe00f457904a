//! `--loss-log`: one CSV row per iteration, iteration 0 being the start image. A coarse-to-fine
//! run numbers iterations over all its scales; each later scale starts with a row for its
//! upsampled start image, which repeats the previous row's iteration with the next `scale`.

use std::path::Path;

use impasto::transfer::LossRecord;
#[cfg(test)]
use impasto::transfer::{loss_csv as to_csv, LOSS_CSV_HEADER as HEADER};

/// Writes the log atomically.
pub fn write(path: &Path, records: &[LossRecord]) -> anyhow::Result<()> {
    impasto::cli_support::atomic::write_bytes_atomic(
        path,
        impasto::transfer::loss_csv(records).as_bytes(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use impasto::loss::LossParts;

    #[test]
    fn rows_parse_back_to_the_same_numbers() {
        let records = [
            LossRecord {
                scale: 0,
                iteration: 0,
                elapsed_s: 0.0,
                parts: LossParts {
                    content: 0.0,
                    style: 1.25e7,
                    tv: 0.0,
                    total: 1.25e10,
                },
            },
            LossRecord {
                scale: 1,
                iteration: 1,
                elapsed_s: 0.731,
                parts: LossParts {
                    content: 3.5e5,
                    style: 1.0 / 3.0,
                    tv: 2.0,
                    total: 3.5e5 + 1e3 / 3.0,
                },
            },
        ];
        let csv = to_csv(&records);
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(HEADER));
        for (line, r) in lines.zip(&records) {
            let v: Vec<f64> = line.split(',').map(|s| s.parse().unwrap()).collect();
            assert_eq!(v[0] as usize, r.iteration);
            assert!((v[1] - r.elapsed_s).abs() < 1e-4);
            assert_eq!(
                [v[2], v[3], v[4], v[5]],
                [r.parts.content, r.parts.style, r.parts.tv, r.parts.total]
            );
            assert_eq!(v[6] as usize, r.scale);
        }
    }
}
