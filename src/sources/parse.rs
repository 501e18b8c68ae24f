//! What the body parsers (kubelet summaries, cAdvisor) share: reading a lenient field, with a
//! warning at its place when it has the wrong type, and setting a metric from it.

use std::fmt;

use heapster_dataflows::catalog::{LabeledMetricId, MetricId};
use heapster_dataflows::model::{LabeledMetric, LabeledValue, MetricSet, Resource, Value};

use crate::sources::lenient::{Expected, Lenient, Num, Obj};

/// A parser that reads lenient fields at places of type `A` (a JSON path as its warnings name
/// it). It says how to warn; the reading and setting are the same for every parser.
pub trait Fields<A: Copy + fmt::Display> {
    fn warn(&mut self, at: A, message: impl fmt::Display);

    /// The value of a lenient field; a wrong type is warned about and read as absent.
    fn get<'v, T: Expected>(&mut self, v: &'v Lenient<T>, at: A) -> Option<&'v T> {
        match v.get() {
            Ok(v) => v,
            Err(found) => {
                self.warn(at, format_args!("expected {}, found {found}", T::EXPECTED));
                None
            }
        }
    }

    fn num(&mut self, v: &Num, at: A) -> Option<i64> {
        self.get(v, at).copied()
    }

    fn obj<'v, T>(&mut self, v: &'v Obj<T>, at: A) -> Option<&'v T> {
        self.get(v, at).map(|o| &o.0)
    }

    /// Sets metric `id` of `set` from the field, when it holds a usable number.
    fn set(&mut self, set: &mut MetricSet, id: MetricId, v: &Num, at: A) {
        set_value(set, id, self.num(v, at));
    }

    /// Adds labeled metric `id` for `resource` (a filesystem, a disk) from the field, when it
    /// holds a usable number; returns the number.
    fn labeled(
        &mut self,
        set: &mut MetricSet,
        id: LabeledMetricId,
        resource: &Resource,
        v: &Num,
        at: A,
    ) -> Option<i64> {
        let value = self.num(v, at);
        push_labeled(set, id, resource, value);
        value
    }
}

/// Sets metric `id` of `set` to `value`, if there is one.
pub fn set_value(set: &mut MetricSet, id: MetricId, value: Option<i64>) {
    if let Some(v) = value {
        set.values.set(id, Value::Int(v));
    }
}

/// Adds labeled metric `id` for `resource` with `value`, if there is one.
pub fn push_labeled(set: &mut MetricSet, id: LabeledMetricId, resource: &Resource, value: Option<i64>) {
    push_labeled_to(&mut set.labeled, id, resource, value);
}

/// [`push_labeled`] onto a set's labeled values, or values gathered for one.
pub fn push_labeled_to(
    labeled: &mut Vec<LabeledValue>,
    id: LabeledMetricId,
    resource: &Resource,
    value: Option<i64>,
) {
    if let Some(v) = value {
        labeled.push(LabeledValue {
            metric: LabeledMetric::Catalog(id),
            resource: resource.clone(),
            value: Value::Int(v),
        });
    }
}
