//! `--device cpu|gpu|auto`: which backend evaluates the objective, resolved once per command.
//!
//! The CPU backend is the library's own. GPU backends come from the `impasto-gpu` crate, behind
//! this crate's `gpu` feature (on by default), so that an embedder of the library never compiles
//! wgpu. `auto` takes a real GPU adapter when there is one and the CPU otherwise: a software
//! adapter (Mesa's llvmpipe) runs the GPU code on the CPU, slower than the CPU engine, so only an
//! explicit `--device gpu` gets one.

use std::sync::Arc;

use impasto::backend::{Backend, CpuBackend};

use crate::cli::DeviceArg;

/// The backend a command runs on, and the choice in words for the user.
#[derive(Clone, Debug)]
pub struct Device {
    /// What the library's settings take.
    pub backend: Arc<dyn Backend>,
    /// `cpu (CPU, 2 threads)`, or with `auto` why.
    pub description: String,
}

/// Resolves `--device` against the GPU backends this build can offer.
pub fn resolve(arg: DeviceArg) -> anyhow::Result<Device> {
    choose(arg, gpu_backends)
}

/// The GPU backends of this machine, hardware first; `Err` says why there are none.
#[cfg(feature = "gpu")]
fn gpu_backends() -> Result<Vec<Arc<dyn Backend>>, String> {
    // The wgpu backend (crates/impasto-gpu): the best adapter, hardware first.
    impasto_gpu::GpuBackend::available()
}

/// The GPU backends of this machine: none in a build without the `gpu` feature.
#[cfg(not(feature = "gpu"))]
fn gpu_backends() -> Result<Vec<Arc<dyn Backend>>, String> {
    Err("this impasto was built without GPU support (cargo feature `gpu` of impasto-cli)".into())
}

/// [`resolve`] with the GPU backends from `gpus` (called only when needed: enumerating adapters
/// starts a graphics API).
pub(crate) fn choose(
    arg: DeviceArg,
    gpus: impl FnOnce() -> Result<Vec<Arc<dyn Backend>>, String>,
) -> anyhow::Result<Device> {
    let cpu = || {
        let backend = CpuBackend::shared();
        let description = backend.info().to_string();
        (backend, description)
    };
    let (backend, description) = match arg {
        DeviceArg::Cpu => cpu(),
        DeviceArg::Gpu => {
            let gpus = gpus().map_err(|why| anyhow::anyhow!("--device gpu: {why}"))?;
            // A hardware adapter if any; asked for by name, a software one will do.
            let best = (gpus.iter().find(|b| !b.info().is_software))
                .or_else(|| gpus.first())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--device gpu: no GPU adapter found (no Vulkan, Metal or DX12 device; \
                         use --device cpu)"
                    )
                })?;
            let description = best.info().to_string();
            (Arc::clone(best), description)
        }
        DeviceArg::Auto => {
            let gpus = gpus();
            let hardware = gpus
                .as_ref()
                .ok()
                .and_then(|g| g.iter().find(|b| !b.info().is_software).cloned());
            match hardware {
                Some(gpu) => {
                    let description = format!("{} (auto: a GPU adapter was found)", gpu.info());
                    (gpu, description)
                }
                None => {
                    let why = match &gpus {
                        Err(why) => why.clone(),
                        Ok(g) if g.is_empty() => "no GPU adapter found".to_string(),
                        Ok(g) => format!(
                            "only software GPU adapters found ({})",
                            g.iter()
                                .map(|b| b.info().description)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    let (backend, cpu) = cpu();
                    (backend, format!("{cpu} (auto: {why})"))
                }
            }
        }
    };
    Ok(Device {
        backend,
        description,
    })
}

#[cfg(test)]
mod tests {
    use impasto::backend::{BackendInfo, Network, NetworkSpec};
    use impasto::weights::VggWeights;

    use super::*;

    #[derive(Debug)]
    struct FakeGpu(&'static str, bool);

    impl Backend for FakeGpu {
        fn info(&self) -> BackendInfo {
            BackendInfo {
                name: "gpu".into(),
                description: self.0.into(),
                is_software: self.1,
                shares_host_memory: false,
            }
        }
        fn load(&self, _: &VggWeights, _: &NetworkSpec) -> impasto::Result<Arc<dyn Network>> {
            Err(impasto::Error::new(impasto::ErrorKind::Parameter, "a fake"))
        }
    }

    fn gpus(list: Vec<FakeGpu>) -> impl FnOnce() -> Result<Vec<Arc<dyn Backend>>, String> {
        move || {
            Ok(list
                .into_iter()
                .map(|g| Arc::new(g) as Arc<dyn Backend>)
                .collect())
        }
    }

    fn none() -> Result<Vec<Arc<dyn Backend>>, String> {
        Err("built without GPU support".into())
    }

    #[test]
    fn cpu_is_the_cpu_whatever_the_gpus() {
        let d = choose(DeviceArg::Cpu, || panic!("no adapter enumeration for cpu")).unwrap();
        assert_eq!(d.backend.info().name, "cpu");
    }

    #[test]
    fn auto_takes_a_hardware_gpu_and_never_a_software_one() {
        let both = vec![FakeGpu("llvmpipe", true), FakeGpu("Radeon", false)];
        let d = choose(DeviceArg::Auto, gpus(both)).unwrap();
        assert_eq!(d.backend.info().description, "Radeon");
        assert!(d.description.contains("auto"), "{}", d.description);

        let d = choose(DeviceArg::Auto, gpus(vec![FakeGpu("llvmpipe", true)])).unwrap();
        assert_eq!(d.backend.info().name, "cpu");
        assert!(d.description.contains("only software"), "{}", d.description);

        let d = choose(DeviceArg::Auto, none).unwrap();
        assert_eq!(d.backend.info().name, "cpu");
        assert!(
            d.description.contains("without GPU support"),
            "{}",
            d.description
        );
    }

    #[test]
    fn gpu_takes_a_software_adapter_when_asked_and_explains_when_there_is_none() {
        let d = choose(DeviceArg::Gpu, gpus(vec![FakeGpu("llvmpipe", true)])).unwrap();
        assert_eq!(d.backend.info().description, "llvmpipe");
        let err = choose(DeviceArg::Gpu, gpus(vec![]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no GPU adapter found"), "{err}");
        let err = choose(DeviceArg::Gpu, none).unwrap_err().to_string();
        assert!(err.contains("built without GPU support"), "{err}");
    }
}
