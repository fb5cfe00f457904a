//! f32 buffers on the device: creating, filling from and reading back to the host.

use impasto::{Error, ErrorKind, Result};

use crate::Gpu;

/// A storage buffer of `len` f32 values on the device.
#[derive(Debug)]
pub struct GpuBuffer {
    pub(crate) buffer: wgpu::Buffer,
    len: usize,
}

impl GpuBuffer {
    /// Number of f32 values.
    pub fn len(&self) -> usize {
        self.len
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
    /// A buffer of `len` zeros.
    pub fn zeros(&self, len: usize, label: &str) -> GpuBuffer {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (len.max(1) * 4) as u64,
            usage: USAGE,
            mapped_at_creation: false,
        });
        GpuBuffer { buffer, len }
    }

    /// A buffer holding `values`.
    pub fn upload(&self, values: &[f32], label: &str) -> GpuBuffer {
        let b = self.zeros(values.len(), label);
        self.write(&b, values);
        b
    }

    /// Overwrites the start of `buffer` with `values` (queued: takes effect before the next
    /// submission's work).
    pub fn write(&self, buffer: &GpuBuffer, values: &[f32]) {
        assert!(values.len() <= buffer.len, "write past the buffer's end");
        if !values.is_empty() {
            self.queue
                .write_buffer(&buffer.buffer, 0, bytemuck::cast_slice(values));
        }
    }

    /// Reads the whole buffer back (waits for all submitted work).
    pub fn read(&self, buffer: &GpuBuffer) -> Result<Vec<f32>> {
        let mut out = vec![0.0; buffer.len];
        self.read_into(&mut [(buffer, &mut out[..])])?;
        Ok(out)
    }

    /// Reads several buffers (each `dst`'s length from the start of its buffer) with one copy
    /// submission and one wait.
    pub fn read_into(&self, pairs: &mut [(&GpuBuffer, &mut [f32])]) -> Result<()> {
        let total: usize = pairs.iter().map(|(_, d)| d.len()).sum();
        if total == 0 {
            return Ok(());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: (total * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        let mut at = 0u64;
        for (b, d) in pairs.iter() {
            assert!(d.len() <= b.len, "read past the buffer's end");
            let bytes = (d.len() * 4) as u64;
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
        let all: &[f32] = bytemuck::cast_slice(&view);
        let mut at = 0;
        for (_, d) in pairs.iter_mut() {
            let n = d.len();
            d.copy_from_slice(&all[at..at + n]);
            at += n;
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
