//! Buffers on the device, of f32 or f16 values: creating, filling from and reading back to the
//! host, which always sees f32.

use half::f16;
use impasto::{Error, ErrorKind, Result};

use crate::Gpu;

/// How values are stored on the device. Arithmetic is f32 either way; f16 storage halves the
/// memory and the traffic of what is stored in it (the feature maps, under
/// [`GpuBackend::open_with`](crate::GpuBackend::open_with)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Storage {
    /// 32-bit floats.
    #[default]
    F32,
    /// 16-bit floats (IEEE binary16; needs the adapter's `shader-f16`).
    F16,
}

impl Storage {
    /// Bytes per value.
    pub fn bytes(self) -> usize {
        match self {
            Storage::F32 => 4,
            Storage::F16 => 2,
        }
    }

    /// The WGSL scalar type.
    pub(crate) fn wgsl(self) -> &'static str {
        match self {
            Storage::F32 => "f32",
            Storage::F16 => "f16",
        }
    }
}

impl std::fmt::Display for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wgsl())
    }
}

/// Bytes on the device of `len` values: copies and bindings go in whole 4-byte words.
fn device_bytes(len: usize, storage: Storage) -> u64 {
    (len.max(1) * storage.bytes()).next_multiple_of(4) as u64
}

/// A storage buffer of `len` values on the device.
#[derive(Debug)]
pub struct GpuBuffer {
    pub(crate) buffer: wgpu::Buffer,
    len: usize,
    storage: Storage,
}

impl GpuBuffer {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }
    /// How its values are stored.
    pub fn storage(&self) -> Storage {
        self.storage
    }
    /// Whether it holds no values (it still has 4 bytes on the device: wgpu refuses empty
    /// bindings).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Bytes on the device.
    pub fn bytes(&self) -> u64 {
        self.buffer.size()
    }
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

impl Gpu {
    /// A buffer of `len` f32 zeros.
    pub fn zeros(&self, len: usize, label: &str) -> GpuBuffer {
        self.zeros_as(len, Storage::F32, label)
    }

    /// A buffer of `len` zeros stored as `storage`.
    pub fn zeros_as(&self, len: usize, storage: Storage, label: &str) -> GpuBuffer {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: device_bytes(len, storage),
            usage: USAGE,
            mapped_at_creation: false,
        });
        GpuBuffer {
            buffer,
            len,
            storage,
        }
    }

    /// An f32 buffer holding `values`.
    pub fn upload(&self, values: &[f32], label: &str) -> GpuBuffer {
        self.upload_as(values, Storage::F32, label)
    }

    /// A buffer holding `values` stored as `storage` (rounded to nearest for f16).
    pub fn upload_as(&self, values: &[f32], storage: Storage, label: &str) -> GpuBuffer {
        let b = self.zeros_as(values.len(), storage, label);
        self.write(&b, values);
        b
    }

    /// Overwrites the start of `buffer` with `values`, converted to its storage (queued: takes
    /// effect before the next submission's work).
    pub fn write(&self, buffer: &GpuBuffer, values: &[f32]) {
        assert!(values.len() <= buffer.len, "write past the buffer's end");
        if values.is_empty() {
            return;
        }
        match buffer.storage {
            Storage::F32 => {
                self.queue
                    .write_buffer(&buffer.buffer, 0, bytemuck::cast_slice(values))
            }
            Storage::F16 => {
                // Padded to a whole word: the queue writes 4-byte multiples.
                let mut bits: Vec<u16> =
                    values.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
                if bits.len() % 2 == 1 {
                    bits.push(0);
                }
                self.queue
                    .write_buffer(&buffer.buffer, 0, bytemuck::cast_slice(&bits));
            }
        }
    }

    /// Reads the whole buffer back as f32 (waits for all submitted work).
    pub fn read(&self, buffer: &GpuBuffer) -> Result<Vec<f32>> {
        let mut out = vec![0.0; buffer.len];
        self.read_into(&mut [(buffer, &mut out[..])])?;
        Ok(out)
    }

    /// Reads several buffers (each `dst`'s length from the start of its buffer, as f32) with
    /// one copy submission and one wait.
    pub fn read_into(&self, pairs: &mut [(&GpuBuffer, &mut [f32])]) -> Result<()> {
        let spans: Vec<u64> = pairs
            .iter()
            .map(|(b, d)| {
                if d.is_empty() {
                    0
                } else {
                    device_bytes(d.len(), b.storage)
                }
            })
            .collect();
        let total: u64 = spans.iter().sum();
        if total == 0 {
            return Ok(());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: total,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        let mut at = 0u64;
        for ((b, d), &bytes) in pairs.iter().zip(&spans) {
            assert!(d.len() <= b.len, "read past the buffer's end");
            if bytes > 0 {
                enc.copy_buffer_to_buffer(&b.buffer, 0, &staging, at, bytes);
            }
            at += bytes;
        }
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| device_error("the read-back was dropped"))?
            .map_err(|e| device_error("reading back from the GPU failed").with_source(e))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| device_error("mapping the read-back failed").with_source(e))?;
        let mut at = 0;
        for ((b, d), &bytes) in pairs.iter_mut().zip(&spans) {
            let span = &view[at..at + bytes as usize];
            match b.storage {
                Storage::F32 => d.copy_from_slice(&bytemuck::cast_slice(span)[..d.len()]),
                Storage::F16 => {
                    let bits: &[u16] = bytemuck::cast_slice(span);
                    for (v, &h) in d.iter_mut().zip(bits) {
                        *v = f16::from_bits(h).to_f32();
                    }
                }
            }
            at += bytes as usize;
        }
        Ok(())
    }

    /// Waits until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| device_error("waiting for the GPU failed").with_source(e))
    }
}

/// A failure of the device itself (lost, out of memory while running).
pub(crate) fn device_error(message: &str) -> Error {
    Error::new(ErrorKind::Limits, format!("GPU: {message}"))
}
