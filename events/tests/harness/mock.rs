//! An in-memory [`EventStore`] whose availability and data errors a test scripts.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use jiff::Timestamp;
use schoolgate_events::{
    AccessEvent, Batch, BypassAttempts, Count, EventSearch, EventStore, ExportFilter, FlaggedQuery,
    GroupBy, HostCount, Period, PurgeReport, Purpose, StoreError, Subject, Totals,
};
use ulid::Ulid;

#[derive(Debug, Default)]
pub struct MockStore {
    /// Stored events by id (inserting an id twice keeps one: like the real stores).
    pub events: Mutex<BTreeMap<Ulid, AccessEvent>>,
    /// The size of every successful insert, in order.
    pub batch_sizes: Mutex<Vec<usize>>,
    /// Rows received in total, duplicates included.
    pub rows_received: AtomicU64,
    /// Insert attempts, failed ones included.
    pub attempts: AtomicU64,
    /// While set, every insert fails transiently.
    pub down: AtomicBool,
    /// Any batch holding an event for this host fails as bad data.
    pub poison_host: Mutex<Option<String>>,
}

impl MockStore {
    pub fn stored(&self) -> usize {
        self.events.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

#[async_trait]
impl EventStore for MockStore {
    fn name(&self) -> &'static str {
        "mock"
    }

    async fn insert(&self, batch: &Batch) -> Result<(), StoreError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::transient("mock store is down"));
        }
        let poison = self.poison_host.lock().ok().and_then(|p| p.clone());
        if let Some(host) = poison
            && batch.events.iter().any(|e| e.host == host)
        {
            return Err(StoreError::Data {
                code: Some(27),
                message: format!("Code: 27, bad host {host}"),
            });
        }
        let mut events = self
            .events
            .lock()
            .map_err(|_| StoreError::transient("poisoned"))?;
        for e in batch.events.iter() {
            events.insert(e.id, e.clone());
        }
        self.rows_received
            .fetch_add(batch.len() as u64, Ordering::SeqCst);
        if let Ok(mut sizes) = self.batch_sizes.lock() {
            sizes.push(batch.len());
        }
        Ok(())
    }

    async fn flagged(&self, _: &FlaggedQuery, _: &Purpose) -> Result<Vec<AccessEvent>, StoreError> {
        Ok(Vec::new())
    }

    async fn search(&self, _: &EventSearch, _: &Purpose) -> Result<Vec<AccessEvent>, StoreError> {
        Ok(Vec::new())
    }

    async fn timeline(
        &self,
        _: &Subject,
        _: Timestamp,
        _: i64,
        _: &Purpose,
    ) -> Result<Vec<AccessEvent>, StoreError> {
        Ok(Vec::new())
    }

    async fn event(&self, _: ulid::Ulid, _: &Purpose) -> Result<Option<AccessEvent>, StoreError> {
        Ok(None)
    }
    async fn counts(
        &self,
        _: &Period,
        _: GroupBy,
        _: Option<&str>,
    ) -> Result<Vec<Count>, StoreError> {
        Ok(Vec::new())
    }

    async fn top_blocked_hosts(
        &self,
        _: &Period,
        _: usize,
        _: Option<&str>,
    ) -> Result<Vec<HostCount>, StoreError> {
        Ok(Vec::new())
    }

    async fn bypass_attempts(
        &self,
        _: &Period,
        _: Option<&str>,
    ) -> Result<Vec<BypassAttempts>, StoreError> {
        Ok(Vec::new())
    }

    async fn export_csv(
        &self,
        _: &Period,
        _: &ExportFilter,
        _: &mut (dyn Write + Send),
        _: &Purpose,
    ) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn totals(&self, _: &Period, _: Option<&str>) -> Result<Totals, StoreError> {
        Ok(Totals::default())
    }

    async fn purge(&self, _: Timestamp) -> Result<PurgeReport, StoreError> {
        Ok(PurgeReport::default())
    }
}
