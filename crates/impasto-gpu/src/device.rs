//! Finding a GPU (or a software Vulkan such as Mesa's lavapipe) and opening it for compute.

use std::fmt;

use impasto::{Error, ErrorKind, Result};

/// What kind of adapter to accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AdapterChoice {
    /// The best adapter there is: a discrete GPU over an integrated one over a virtual one, and a
    /// software rasteriser (lavapipe, WARP, SwiftShader) only if nothing else exists.
    #[default]
    Any,
    /// Hardware only: a software adapter counts as none (`--device auto` falls back to the CPU
    /// engine then, which is faster than a CPU emulating a GPU).
    HardwareOnly,
}

/// What the chosen adapter is and can do, for reports and for sizing the work.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    /// The driver's name for the device, e.g. "NVIDIA GeForce RTX 4090" or "llvmpipe (LLVM 15…)".
    pub name: String,
    /// Vulkan, Metal or DX12.
    pub backend: String,
    /// Discrete, integrated, virtual GPU, or CPU (software).
    pub device_type: String,
    /// True for a software implementation on the CPU (Mesa's lavapipe, Microsoft's WARP).
    pub software: bool,
    /// The driver's name and version.
    pub driver: String,
    /// Whether the adapter offers `shader-f16` (half-precision arithmetic in shaders).
    pub shader_f16: bool,
    /// Whether the adapter offers subgroup operations.
    pub subgroups: bool,
    /// The largest storage buffer a shader can bind, in bytes.
    pub max_storage_binding: u64,
    /// The largest buffer the device can create, in bytes.
    pub max_buffer: u64,
    /// Workgroup memory per workgroup, in bytes.
    pub max_workgroup_memory: u32,
    /// The largest number of workgroups along one dimension of a dispatch.
    pub max_workgroups_per_dimension: u32,
}

impl fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {}{}; storage bindings up to {} MiB{}{})",
            self.name,
            self.backend,
            self.device_type,
            if self.software { ", software" } else { "" },
            self.max_storage_binding >> 20,
            if self.shader_f16 { ", shader-f16" } else { "" },
            if self.subgroups { ", subgroups" } else { "" },
        )
    }
}

/// An open device and its queue, with what it can do.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    report: AdapterReport,
    limits: wgpu::Limits,
}

impl fmt::Debug for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.report)
            .finish()
    }
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// The error for "no adapter": the same kind as any other missing resource.
fn no_adapter(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Limits, message)
}

impl Gpu {
    /// Opens the best adapter `choice` allows, with every limit the adapter offers (feature maps
    /// of large images need far more than WebGPU's defaults). Fails with a message naming what
    /// is missing when there is no adapter (no Vulkan/Metal/DX12 driver, or only a software one
    /// under [`AdapterChoice::HardwareOnly`]).
    pub fn open(choice: AdapterChoice) -> Result<Gpu> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
        let instance = wgpu::Instance::new(desc);
        let mut adapters = pollster::block_on(instance.enumerate_adapters(desc_backends()));
        let seen: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
            })
            .collect();
        adapters.sort_by_key(|a| rank(a.get_info().device_type));
        if choice == AdapterChoice::HardwareOnly {
            adapters.retain(|a| a.get_info().device_type != wgpu::DeviceType::Cpu);
        }
        let Some(adapter) = adapters.into_iter().next() else {
            return Err(no_adapter(if seen.is_empty() {
                "no GPU adapter found: no Vulkan, Metal or DX12 driver answered (on Linux \
                 install the GPU's Vulkan driver, or Mesa's software one, e.g. Debian's \
                 mesa-vulkan-drivers)"
                    .to_string()
            } else {
                format!(
                    "no hardware GPU adapter found, only software ones: {}",
                    seen.join(", ")
                )
            }));
        };
        let info = adapter.get_info();
        let features = adapter.features();
        let limits = adapter.limits();
        let report = AdapterReport {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            software: info.device_type == wgpu::DeviceType::Cpu,
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            max_storage_binding: limits.max_storage_buffer_binding_size,
            max_buffer: limits.max_buffer_size,
            max_workgroup_memory: limits.max_compute_workgroup_storage_size,
            max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("impasto"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| {
            no_adapter(format!("cannot open the GPU adapter {}", report.name)).with_source(e)
        })?;
        tracing::info!("GPU adapter: {report}");
        Ok(Gpu {
            device,
            queue,
            report,
            limits,
        })
    }

    /// What the adapter is.
    pub fn report(&self) -> &AdapterReport {
        &self.report
    }

    /// The limits the device was opened with (the adapter's own).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }
}

fn desc_backends() -> wgpu::Backends {
    wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12
}
