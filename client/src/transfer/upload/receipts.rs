//! Receipts: the datanodes' signed proof that they hold a chunk, kept in
//! a [`ReceiptBox`] until reported. A background [`Reporter`] sends them to
//! the namenode shortly after they arrive, a page at a time, so that a
//! re-run of a failed upload skips every chunk already stored.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use blob_common::presign::Receipt;
use blob_common::proto::namenode::{ChunkBatch, MAX_PAGE};
use blob_common::UploadId;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::transfer::{with_retries, AbortOnDrop};
use crate::Client;

/// How long the receipt reporter gathers receipts before it reports them.
const REPORT_GATHER: Duration = Duration::from_millis(100);

/// Receipts not yet reported to the namenode.
#[derive(Default)]
pub(crate) struct ReceiptBox {
    pending: Mutex<Vec<Receipt>>,
    arrived: Notify,
}

impl ReceiptBox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Receipt>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// New receipts: wakes the reporter.
    pub(crate) fn push(&self, receipts: impl IntoIterator<Item = Receipt>) {
        let mut pending = self.lock();
        let before = pending.len();
        pending.extend(receipts);
        if pending.len() > before {
            self.arrived.notify_one();
        }
    }

    /// Receipts whose report failed: kept for the next call, without waking
    /// the reporter (it would only fail again at once).
    pub(crate) fn put_back(&self, receipts: Vec<Receipt>) {
        self.lock().extend(receipts);
    }

    pub(crate) fn take(&self) -> Vec<Receipt> {
        std::mem::take(&mut *self.lock())
    }

    /// At most one page of receipts; the reporter is woken again for the
    /// rest.
    pub(super) fn take_page(&self) -> Vec<Receipt> {
        let mut pending = self.lock();
        if pending.len() <= MAX_PAGE {
            return std::mem::take(&mut *pending);
        }
        let rest = pending.split_off(MAX_PAGE);
        let page = std::mem::replace(&mut *pending, rest);
        self.arrived.notify_one();
        page
    }
}

/// The background task reporting receipts.
pub(super) struct Reporter {
    stop: CancellationToken,
    task: AbortOnDrop<()>,
}

impl Reporter {
    pub(super) fn start(client: Client, upload: UploadId, receipts: Arc<ReceiptBox>) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            report_receipts(client, upload, receipts, stop.clone())
                .instrument(tracing::Span::current()),
        );
        Reporter {
            stop,
            task: AbortOnDrop(task),
        }
    }

    /// Stops the reporter once its report in flight, if any, is answered.
    pub(super) async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The reporter's loop: wakes on new receipts, gathers for
/// [`REPORT_GATHER`], reports a page; a failed report keeps its receipts
/// for the next call.
async fn report_receipts(
    client: Client,
    upload: UploadId,
    receipts: Arc<ReceiptBox>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = receipts.arrived.notified() => {}
        }
        // Gather for a moment: receipts of a short upload then go with its
        // commit (one synced namenode write instead of two), and a long
        // one reports in batches.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(REPORT_GATHER) => {}
        }
        let batch = ChunkBatch {
            chunks: Vec::new(),
            receipts: receipts.take_page(),
        };
        if batch.receipts.is_empty() {
            continue;
        }
        let n = batch.receipts.len();
        match with_retries("report receipts", || client.send_batch(&upload, &batch)).await {
            Ok(_) => tracing::debug!(receipts = n, "receipts reported"),
            Err(e) => {
                tracing::warn!(receipts = n, error = %e, "reporting receipts failed; they go with the next call");
                receipts.put_back(batch.receipts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use blob_common::{ChunkId, NodeId};

    use super::*;

    #[test]
    fn receipt_box_takes_everything_once() {
        let b = ReceiptBox::default();
        assert!(b.take().is_empty());
        let r = Receipt {
            node: NodeId([1; 8]),
            chunk: ChunkId::of(b"x"),
            size: 1,
            upload: None,
            issued: 0,
            kid: "k".into(),
            sig: "s".into(),
        };
        b.push(vec![r.clone(), r.clone()]);
        b.put_back(vec![r]);
        assert_eq!(b.take().len(), 3);
        assert!(b.take().is_empty());
    }
}
