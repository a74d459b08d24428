//! [`Resources`]: CPU, memory and GPU amounts with checked arithmetic.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One of the three resources a worker offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// CPU, in millicores.
    Cpu,
    /// Memory, in MiB.
    Memory,
    /// Whole GPUs.
    Gpu,
}

impl ResourceKind {
    /// All kinds, in the order they are checked.
    pub const ALL: [ResourceKind; 3] = [ResourceKind::Cpu, ResourceKind::Memory, ResourceKind::Gpu];

    /// Stable lower-case name (`cpu`, `memory`, `gpu`), as used in stores and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Cpu => "cpu",
            ResourceKind::Memory => "memory",
            ResourceKind::Gpu => "gpu",
        }
    }

    /// Parses the name produced by [`ResourceKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cpu" => Some(ResourceKind::Cpu),
            "memory" => Some(ResourceKind::Memory),
            "gpu" => Some(ResourceKind::Gpu),
            _ => None,
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Arithmetic on [`Resources`] left the representable range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// An addition overflowed.
    #[error("{0} overflowed")]
    Overflow(ResourceKind),
    /// A subtraction went below zero.
    #[error("{0} underflowed (would go below zero)")]
    Underflow(ResourceKind),
}

/// An amount of CPU, memory and GPU. All arithmetic is checked: it never wraps.
///
/// ```
/// use sched_core::Resources;
/// let a = Resources::new(500, 256, 0);
/// let b = Resources::new(250, 128, 0);
/// assert_eq!(a.checked_sub(&b).unwrap(), b);
/// assert!(Resources::new(0, 0, 0).checked_sub(&Resources::gpus(1)).is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in millicores (1000 = one core).
    pub cpu_millicores: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Number of GPUs.
    pub gpu_count: u64,
}

impl Resources {
    /// Zero of everything.
    pub const ZERO: Resources = Resources {
        cpu_millicores: 0,
        memory_mib: 0,
        gpu_count: 0,
    };

    /// Builds an amount.
    pub const fn new(cpu_millicores: u64, memory_mib: u64, gpu_count: u64) -> Self {
        Resources {
            cpu_millicores,
            memory_mib,
            gpu_count,
        }
    }

    /// CPU and memory only.
    pub const fn cpu_mem(cpu_millicores: u64, memory_mib: u64) -> Self {
        Self::new(cpu_millicores, memory_mib, 0)
    }

    /// GPUs only.
    pub const fn gpus(gpu_count: u64) -> Self {
        Self::new(0, 0, gpu_count)
    }

    /// The amount of one kind.
    pub fn get(&self, kind: ResourceKind) -> u64 {
        match kind {
            ResourceKind::Cpu => self.cpu_millicores,
            ResourceKind::Memory => self.memory_mib,
            ResourceKind::Gpu => self.gpu_count,
        }
    }

    fn set(&mut self, kind: ResourceKind, v: u64) {
        match kind {
            ResourceKind::Cpu => self.cpu_millicores = v,
            ResourceKind::Memory => self.memory_mib = v,
            ResourceKind::Gpu => self.gpu_count = v,
        }
    }

    /// True when every amount is zero.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// `self + other`, or the first kind that overflows.
    pub fn checked_add(&self, other: &Resources) -> Result<Resources, ResourceError> {
        let mut out = Resources::ZERO;
        for k in ResourceKind::ALL {
            let v = self
                .get(k)
                .checked_add(other.get(k))
                .ok_or(ResourceError::Overflow(k))?;
            out.set(k, v);
        }
        Ok(out)
    }

    /// `self - other`, or the first kind that would go below zero.
    pub fn checked_sub(&self, other: &Resources) -> Result<Resources, ResourceError> {
        let mut out = Resources::ZERO;
        for k in ResourceKind::ALL {
            let v = self
                .get(k)
                .checked_sub(other.get(k))
                .ok_or(ResourceError::Underflow(k))?;
            out.set(k, v);
        }
        Ok(out)
    }

    /// `self - other` clamped at zero per kind.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        let mut out = Resources::ZERO;
        for k in ResourceKind::ALL {
            out.set(k, self.get(k).saturating_sub(other.get(k)));
        }
        out
    }

    /// The first kind in which `request` exceeds `self`, if any.
    pub fn first_shortfall(&self, request: &Resources) -> Option<ResourceKind> {
        ResourceKind::ALL
            .into_iter()
            .find(|&k| request.get(k) > self.get(k))
    }

    /// True when `request` fits inside `self` in every kind.
    pub fn fits(&self, request: &Resources) -> bool {
        self.first_shortfall(request).is_none()
    }

    /// True when every kind of `self` is at most the same kind of `other`.
    pub fn le(&self, other: &Resources) -> bool {
        other.fits(self)
    }

    /// Sums an iterator of amounts with checked arithmetic.
    pub fn checked_sum<'a>(
        items: impl IntoIterator<Item = &'a Resources>,
    ) -> Result<Resources, ResourceError> {
        items
            .into_iter()
            .try_fold(Resources::ZERO, |acc, r| acc.checked_add(r))
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu={}m mem={}Mi gpu={}",
            self.cpu_millicores, self.memory_mib, self.gpu_count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_never_wraps() {
        let err = Resources::gpus(0).checked_sub(&Resources::gpus(1));
        assert_eq!(err, Err(ResourceError::Underflow(ResourceKind::Gpu)));
    }

    #[test]
    fn add_reports_overflowing_kind() {
        let a = Resources::new(1, u64::MAX, 0);
        assert_eq!(
            a.checked_add(&Resources::new(1, 1, 0)),
            Err(ResourceError::Overflow(ResourceKind::Memory))
        );
    }

    #[test]
    fn shortfall_names_first_short_kind() {
        let free = Resources::new(1000, 512, 1);
        assert_eq!(
            free.first_shortfall(&Resources::new(500, 1024, 2)),
            Some(ResourceKind::Memory)
        );
        assert_eq!(free.first_shortfall(&Resources::new(500, 256, 1)), None);
    }

    #[test]
    fn checked_sum_sums() {
        let v = [Resources::new(1, 2, 3), Resources::new(4, 5, 6)];
        assert_eq!(Resources::checked_sum(&v), Ok(Resources::new(5, 7, 9)));
    }
}
