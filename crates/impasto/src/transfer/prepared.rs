//! What every transfer of a batch shares: the network, built once, and the style images'
//! targets, computed once per working size. A batch of N photos in one style then builds the
//! network and looks at the paintings once, not N times.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::color::PreserveColor;
use crate::image_io::Image;
use crate::loss::StyleLoss;
use crate::weights::VggWeights;
use crate::Result;

use super::engine::load_network;
use super::multiscale::run_schedule_in;
use super::{Init, LossRecord, Outcome, Schedule, Transfer, TransferSettings};
use crate::backend::Network;

/// Style images and settings prepared for many transfers: the network is built here, and the
/// style losses at each working size are computed by the first transfer at that size and handed
/// to the others.
///
/// The style targets are shared only where they do not depend on the photo: with colour
/// preservation (the paintings are recoloured to each photo) or spatial masks (each photo has
/// its own regions) every transfer computes its own; the network is shared all the same.
pub struct PreparedStyles<'w> {
    weights: &'w VggWeights,
    styles: Vec<Image>,
    /// The settings every transfer runs with, but for `size` and `init`, given per transfer.
    settings: TransferSettings,
    net: Arc<dyn Network>,
    shares_targets: bool,
    /// Style losses by working size (the long side the styles' size derives from).
    targets: Mutex<Vec<(usize, Arc<Vec<StyleLoss>>)>>,
    /// How many times the style targets were computed, for tests and logs.
    computed: AtomicUsize,
}

impl<'w> PreparedStyles<'w> {
    /// Builds the network for `settings` (its layers, pooling and algorithm) and checks the
    /// settings as far as they do not depend on a photo.
    pub fn new(
        weights: &'w VggWeights,
        styles: Vec<Image>,
        settings: &TransferSettings,
    ) -> Result<Self> {
        let net = load_network(weights, settings, styles.len())?;
        Ok(PreparedStyles {
            weights,
            styles,
            settings: settings.clone(),
            net,
            shares_targets: settings.masks.is_none()
                && settings.preserve_color == PreserveColor::None,
            targets: Mutex::new(Vec::new()),
            computed: AtomicUsize::new(0),
        })
    }

    /// The settings the transfers run with (`size` and `init` are each transfer's own).
    pub fn settings(&self) -> &TransferSettings {
        &self.settings
    }

    /// The style images, as given.
    pub fn styles(&self) -> &[Image] {
        &self.styles
    }

    /// How many times the style targets have been computed so far: once per working size
    /// when they are shared, once per transfer otherwise.
    pub fn style_target_computations(&self) -> usize {
        self.computed.load(Ordering::Relaxed)
    }

    /// A transfer of the styles onto `content` at long side `size`, starting from `init`
    /// (as [`Transfer::new`] with the prepared settings).
    pub fn transfer(&self, content: &Image, size: usize, init: Init) -> Result<Transfer> {
        let settings = TransferSettings {
            size,
            init,
            ..self.settings.clone()
        };
        self.transfer_with(content, &settings)
    }

    /// A coarse-to-fine run of `schedule` onto `content` starting from `init`, as
    /// [`run_schedule`](super::run_schedule) with the prepared settings.
    pub fn run(
        &self,
        content: &Image,
        init: Init,
        schedule: &Schedule,
        observer: impl FnMut(&Transfer, &LossRecord) -> ControlFlow<()>,
    ) -> Result<Outcome> {
        let settings = TransferSettings {
            init,
            ..self.settings.clone()
        };
        run_schedule_in(
            self.weights,
            content,
            &self.styles,
            &settings,
            schedule,
            Some(self),
            observer,
        )
    }

    /// The network every transfer of the batch runs on.
    pub(super) fn network(&self) -> Arc<dyn Network> {
        Arc::clone(&self.net)
    }

    /// A transfer with `settings`, which are the prepared ones but for size and start.
    pub(super) fn transfer_with(
        &self,
        content: &Image,
        settings: &TransferSettings,
    ) -> Result<Transfer> {
        let cached = match self.shares_targets {
            true => self
                .lock()
                .iter()
                .find(|(s, _)| *s == settings.size)
                .map(|(_, t)| t.clone()),
            false => None,
        };
        let (transfer, kept) = Transfer::build(
            &*self.net,
            content,
            &self.styles,
            settings,
            cached.as_deref().map(Vec::as_slice),
            self.shares_targets && cached.is_none(),
        )?;
        if cached.is_none() {
            self.computed.fetch_add(1, Ordering::Relaxed);
            if let Some(losses) = kept {
                self.lock().push((settings.size, Arc::new(losses)));
            }
        }
        Ok(transfer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(usize, Arc<Vec<StyleLoss>>)>> {
        // A panic elsewhere cannot leave the list half-changed: a push is one step.
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }
}
