//! A metric family: one series per label set, typed by a label struct, with a cap on how
//! many series it holds and a way to forget the series of things that are gone.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};

use crate::labels::{Labels, METRIC_NAME};
use crate::metric::{Counter, Value};

/// A label value taken from a closed set (a status class, a replica state): the type
/// bounds how many series a family can have.
pub trait LabelValue {
    fn as_label(&self) -> &str;
}

impl LabelValue for String {
    fn as_label(&self) -> &str {
        self
    }
}

/// The labels of one family's series: a struct whose fields are its label names.
pub trait LabelSet: Clone + Ord + fmt::Debug + Send + Sync + 'static {
    /// Label names, in the order `values` gives the values.
    const NAMES: &'static [&'static str];
    fn values(&self) -> Vec<&str>;
}

/// Defines a label struct: its fields are the label names, in exposition order.
macro_rules! label_set {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name {
            $(pub $field: $ty),+
        }

        impl $name {
            #[allow(clippy::too_many_arguments)]
            pub fn new($($field: impl Into<$ty>),+) -> Self {
                $name { $($field: $field.into()),+ }
            }
        }

        impl $crate::family::LabelSet for $name {
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),+];
            fn values(&self) -> Vec<&str> {
                vec![$($crate::family::LabelValue::as_label(&self.$field)),+]
            }
        }
    };
}
pub(crate) use label_set;

/// What a family is: its name as exposed (without `_total`), help text, and cap.
#[derive(Debug, Clone, Copy)]
pub struct Desc {
    pub name: &'static str,
    pub help: &'static str,
}

#[derive(Debug)]
struct Inner<L, M> {
    desc: Desc,
    max_series: usize,
    template: M,
    series: RwLock<BTreeMap<L, M>>,
    /// Counts label sets turned away because the family was full.
    refused: Counter,
}

/// One metric family. Cloning is cheap and clones share their series.
///
/// It holds at most `max_series` series: asking for a new label set when it is full
/// returns a detached value that updates nothing the exposition or the history sees,
/// and counts the refusal in `baton_metrics_series_refused_total{family}`. Series of
/// things that are gone are removed with `remove` or `retain`.
#[derive(Debug)]
pub struct Family<L, M> {
    inner: Arc<Inner<L, M>>,
}

impl<L, M> Clone for Family<L, M> {
    fn clone(&self) -> Self {
        Family {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<L: LabelSet, M: Value> Family<L, M> {
    pub(crate) fn new(desc: Desc, max_series: usize, template: M, refused: Counter) -> Self {
        Family {
            inner: Arc::new(Inner {
                desc,
                max_series,
                template,
                series: RwLock::new(BTreeMap::new()),
                refused,
            }),
        }
    }

    /// The series for `labels`, made at zero the first time. Keep the handle where a
    /// path is hot (the proxy's per-request counters): updating it takes no lock.
    pub fn get(&self, labels: &L) -> M {
        if let Some(m) = self.read().get(labels) {
            return m.clone();
        }
        let mut series = self
            .inner
            .series
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = series.get(labels) {
            return m.clone();
        }
        let m = self.inner.template.fresh();
        if series.len() >= self.inner.max_series {
            self.inner.refused.inc();
            return m;
        }
        series.insert(labels.clone(), m.clone());
        m
    }

    /// Forgets one series; whether it existed.
    pub fn remove(&self, labels: &L) -> bool {
        self.write().remove(labels).is_some()
    }

    /// Keeps only the series whose labels `keep` says yes to.
    pub fn retain(&self, mut keep: impl FnMut(&L) -> bool) {
        self.write().retain(|l, _| keep(l));
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// The label sets of the series `pick` says yes to.
    pub fn labels(&self, mut pick: impl FnMut(&L) -> bool) -> Vec<L>
    where
        L: Clone,
    {
        self.read().keys().filter(|l| pick(l)).cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// The family's name as the exposition writes it, counters with `_total`.
    pub fn name(&self) -> String {
        let suffix = if M::TYPE == MetricType::Counter {
            "_total"
        } else {
            ""
        };
        format!("{}{suffix}", self.inner.desc.name)
    }

    pub(crate) fn desc(&self) -> Desc {
        self.inner.desc
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<L, M>> {
        self.inner
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<L, M>> {
        self.inner
            .series
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the registry needs of any family: sampling into the history's shape.
pub(crate) trait Collect: Send + Sync {
    fn collect(&self, out: &mut Vec<(Labels, f64)>);
}

impl<L: LabelSet, M: Value> Collect for Family<L, M> {
    fn collect(&self, out: &mut Vec<(Labels, f64)>) {
        let mut parts = Vec::new();
        for (labels, m) in self.read().iter() {
            parts.clear();
            m.read(&mut parts);
            let values = labels.values();
            for (suffix, le, v) in parts.drain(..) {
                let mut pairs: Vec<(String, String)> = Vec::with_capacity(L::NAMES.len() + 2);
                pairs.push((
                    METRIC_NAME.to_string(),
                    format!("{}{suffix}", self.inner.desc.name),
                ));
                for (n, val) in L::NAMES.iter().zip(&values) {
                    pairs.push((n.to_string(), val.to_string()));
                }
                if let Some(le) = le {
                    pairs.push(("le".to_string(), le));
                }
                out.push((Labels::new(pairs), v));
            }
        }
    }
}

impl<L, M: Value> TypedMetric for Family<L, M> {
    const TYPE: MetricType = M::TYPE;
}

impl<L: LabelSet, M: Value> EncodeMetric for Family<L, M> {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (labels, m) in self.read().iter() {
            let pairs: Vec<(&str, &str)> = L::NAMES.iter().copied().zip(labels.values()).collect();
            let mut e = encoder.encode_family(&pairs)?;
            m.encode(&mut e)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }

    fn is_empty(&self) -> bool {
        Family::is_empty(self)
    }
}
