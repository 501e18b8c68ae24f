//! The kubelet Summary API: a node's `/stats/summary` body and its parser.

pub mod summary;

use heapster_dataflows::model::Interner;
use heapster_dataflows::{MetricSet, Name};

use crate::bridge::{Fetched, Parsed};
use crate::sources::{NodeTarget, ScrapeError};

/// One node's summary for one window, as scraped or read from a scenario. It is parsed on the
/// worker that owns the node ([`Fetched::parse`]).
#[derive(Debug)]
pub struct SummaryScrape {
    pub target: NodeTarget,
    pub body: Result<Vec<u8>, ScrapeError>,
}

impl Fetched for SummaryScrape {
    fn node(&self) -> &Name {
        &self.target.name
    }

    fn parse(self: Box<Self>, window_ns: i64, interner: &mut Interner, out: &mut Vec<MetricSet>) -> Parsed {
        // The source logged a failure when the node's state changed.
        let Ok(body) = self.body else { return Parsed::Unfetched };
        let bytes = body.len() as u64;
        let parsed = match summary::parse_summary(&body, &self.target, window_ns, interner, out) {
            Ok(report) => Parsed::Sets { bytes, warnings: report.warnings },
            Err(error) => Parsed::Rejected { bytes, what: "summary", error: Box::new(error) },
        };
        // Back to the scraper for the next body; a body read from a file is simply dropped.
        crate::sources::kubernetes::bodies::recycle(body);
        parsed
    }
}
