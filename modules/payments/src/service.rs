//! The payments module's use cases: the ones an event triggers (an order asks for its payment, an
//! order ends), the worker that talks to the provider, the provider's news (webhook, the fake's
//! delayed answers, the development endpoints) and the reads.
//!
//! No provider call happens inside a transaction. The event handlers only write rows; the worker
//! claims a due row with a lease (one conditional UPDATE), calls the provider, then applies the
//! answer and its events in one transaction through `apply_provider_status`, the one place every
//! answer goes through, whichever way it came (synchronous, webhook, reconciliation, the fake's
//! later answer). Races, decided there: a webhook ahead of the synchronous answer makes the answer
//! a repeat; a cancel while the payment is in flight finds it `canceling`, and a success that
//! still comes is told (`PaymentSucceeded`) and refunded.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kernel::{Outbox, Principal};
use payments_contracts as events;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{Failure, Intent, IntentStatus, Money, Outcome, Payment, PaymentId, PaymentStatus, ProviderAnswer};
use crate::persistence;
use crate::provider::fake::{CustomerAction, FakeProvider};
use crate::provider::{NewIntent, PaymentProvider, ProviderError, idempotency_key};

/// How the worker paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often it looks for due work when nothing woke it.
    pub poll_interval: Duration,
    /// How long a `processing` or `requires_action` payment waits for news before the worker asks.
    pub reconcile_after: Duration,
}

pub struct Payments {
    db: DatabaseConnection,
    outbox: Outbox<events::Payments>,
    provider: Arc<dyn PaymentProvider>,
    /// The embedded provider, when it is the one: its delayed answers, its development endpoints.
    fake: Option<Arc<FakeProvider>>,
    /// Whether `POST /payments/{id}/confirm` and `/fail` serve (the fake provider, not in production).
    dev_endpoints: bool,
    timing: Timing,
    wake: Notify,
}

/// An order's request for the payment of one attempt (`OrderPaymentRequested`).
#[derive(Debug, Clone)]
pub struct PaymentRequest {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub amount: Money,
    pub payment_method: Option<String>,
    pub attempt: u32,
}

/// News of a payment from the provider: which intent, what it says, and the provider's event id
/// that makes a repeat harmless.
#[derive(Debug, Clone)]
pub struct ProviderNews {
    pub event_id: String,
    pub intent_id: String,
    pub answer: ProviderAnswer,
}

/// What became of a piece of provider news.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewsApplied {
    Applied,
    /// The event was handled before: nothing happened.
    Repeat,
    /// No payment here has that intent: acknowledged, nothing happened.
    UnknownPayment,
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no payment {0}")]
    NotFound(PaymentId),
    /// The endpoints serve the fake provider outside production only.
    #[error("not available")]
    Unavailable,
    #[error("the payment is {}", .0.as_str())]
    WrongState(PaymentStatus),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// How long a worker holds a payment: longer than two provider calls at their timeout.
const LEASE: chrono::Duration = chrono::Duration::seconds(60);

impl Payments {
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        provider: Arc<dyn PaymentProvider>,
        fake: Option<Arc<FakeProvider>>,
        dev_endpoints: bool,
        timing: Timing,
    ) -> Self {
        Self { db, outbox: outbox.bind(), provider, fake, dev_endpoints, timing, wake: Notify::new() }
    }

    fn reconcile_after(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.timing.reconcile_after).unwrap_or(chrono::Duration::seconds(60))
    }

    /// An order asks for the payment of `request.attempt`: the row is written in the delivery's
    /// transaction, the worker does the rest. A repeat of the attempt is a no-op; so is a new
    /// attempt while the order has a payment succeeded or in flight (its answer is coming). An
    /// order that ended already gets a payment `canceled` at once: nothing is charged.
    #[tracing::instrument(skip_all, fields(order.id = %request.order_id, attempt = request.attempt))]
    pub async fn request_payment(&self, txn: &DatabaseTransaction, request: PaymentRequest) -> anyhow::Result<()> {
        let existing = persistence::of_order(txn, request.order_id, true).await.context("failed to load payments")?;
        if existing.iter().any(|p| p.attempt == request.attempt) {
            tracing::info!("payment requested again; ignored");
            return Ok(());
        }
        let ended = existing.iter().any(|p| p.order_ended)
            || persistence::order_ended(txn, request.order_id).await.context("failed to read ended orders")?;
        if !ended
            && let Some(open) =
                existing.iter().find(|p| p.status.is_in_flight() || matches!(p.status, PaymentStatus::Succeeded))
        {
            tracing::warn!(payment.id = %open.id, status = open.status.as_str(), "the order has a payment already; ignored");
            return Ok(());
        }
        let payment = Payment::requested(
            request.order_id,
            request.user_id,
            request.attempt,
            request.amount,
            request.payment_method,
            self.provider.name(),
            ended,
            kernel::db::now(),
        );
        persistence::insert(txn, &payment).await.context("failed to insert a payment")?;
        tracing::info!(payment.id = %payment.id, status = payment.status.as_str(), "payment requested");
        Ok(())
    }

    /// The order ended (cancelled, rejected): its open payments are canceled, its paid one
    /// refunded, by the worker; a payment that succeeds later is refunded too.
    #[tracing::instrument(skip_all, fields(order.id = %order_id))]
    pub async fn end_order(&self, txn: &DatabaseTransaction, order_id: Uuid) -> anyhow::Result<()> {
        let now = kernel::db::now();
        persistence::end_order(txn, order_id, now).await.context("failed to record an ended order")?;
        for mut payment in persistence::of_order(txn, order_id, true).await.context("failed to load payments")? {
            if payment.end_order(now) {
                persistence::update(txn, &payment).await.context("failed to save a payment")?;
                tracing::info!(payment.id = %payment.id, status = payment.status.as_str(), "order ended");
            }
        }
        Ok(())
    }

    /// Wakes the worker: the event handlers' rows are committed ([`crate::events::routes`]).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Applies `answer` to the payment and publishes what it tells, in `txn`: the one function
    /// every provider answer goes through. A repeat changes nothing and publishes nothing.
    async fn apply_provider_status(
        &self,
        txn: &DatabaseTransaction,
        payment: &mut Payment,
        answer: &ProviderAnswer,
    ) -> anyhow::Result<()> {
        let now = kernel::db::now();
        let before = payment.status;
        for outcome in payment.apply(answer, now, self.reconcile_after()) {
            self.publish(txn, payment, outcome).await?;
        }
        if payment.status != before {
            tracing::info!(
                payment.id = %payment.id,
                from = before.as_str(),
                to = payment.status.as_str(),
                "payment moved"
            );
        }
        Ok(())
    }

    async fn publish(&self, txn: &DatabaseTransaction, p: &Payment, outcome: Outcome) -> anyhow::Result<()> {
        let (payment_id, order_id, attempt) = (p.id.as_uuid(), p.order_id, p.attempt);
        match outcome {
            Outcome::ActionRequired { client_secret } => {
                let event = events::PaymentActionRequired { payment_id, order_id, attempt, client_secret };
                self.outbox.publish(txn, &event, None).await
            }
            Outcome::Succeeded => {
                let paid_at = p.paid_at.unwrap_or_else(kernel::db::now);
                let event = events::PaymentSucceeded { payment_id, order_id, attempt, amount: p.amount, paid_at };
                self.outbox.publish(txn, &event, None).await
            }
            Outcome::Failed(failure) => {
                let event = events::PaymentFailed {
                    payment_id,
                    order_id,
                    attempt,
                    code: failure.code,
                    reason: failure.message,
                    retryable: failure.retryable,
                };
                self.outbox.publish(txn, &event, None).await
            }
            Outcome::Refunded => {
                let refunded_at = p.refunded_at.unwrap_or_else(kernel::db::now);
                let event = events::PaymentRefunded { payment_id, order_id, attempt, amount: p.amount, refunded_at };
                self.outbox.publish(txn, &event, None).await
            }
        }
    }

    /// News from the provider (a webhook, the fake's later answer, a completed action): applied in
    /// one transaction with the record of its event id, so the same event twice has one effect.
    #[tracing::instrument(skip_all, fields(event.id = %news.event_id, intent.id = %news.intent_id))]
    pub async fn apply_news(&self, provider: &str, news: ProviderNews) -> anyhow::Result<NewsApplied> {
        let now = kernel::db::now();
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        if !persistence::remember_provider_event(&txn, provider, &news.event_id, now)
            .await
            .context("failed to record a provider event")?
        {
            tracing::info!("provider event handled before; ignored");
            return Ok(NewsApplied::Repeat);
        }
        let found = persistence::find_by_provider_id(&txn, provider, &news.intent_id, true)
            .await
            .context("failed to load a payment")?;
        let Some(mut payment) = found else {
            txn.commit().await.context("failed to commit a provider event")?;
            tracing::info!("provider event about no payment of Bazaar's; ignored");
            return Ok(NewsApplied::UnknownPayment);
        };
        self.apply_provider_status(&txn, &mut payment, &news.answer).await?;
        persistence::update(&txn, &payment).await.context("failed to save a payment")?;
        self.outbox.commit(txn).await.context("failed to commit a payment")?;
        self.wake.notify_one();
        Ok(NewsApplied::Applied)
    }

    /// The payment, if `who` may see it: its owner or an admin. Anyone else is told it does not exist.
    pub async fn get(&self, id: PaymentId, who: &Principal) -> anyhow::Result<Option<Payment>> {
        let payment = persistence::find(&self.db, id, false).await.context("failed to load a payment")?;
        Ok(payment.filter(|p| who.is_admin() || p.user_id == who.user_id))
    }

    /// `who`'s payments, or everyone's for an admin; only `order_id`'s if given.
    pub async fn list(
        &self,
        who: &Principal,
        order_id: Option<Uuid>,
        after: Option<PaymentId>,
        limit: u64,
    ) -> anyhow::Result<Vec<Payment>> {
        let owner = (!who.is_admin()).then_some(who.user_id);
        persistence::list(&self.db, owner, order_id, after, limit).await.context("failed to list payments")
    }

    /// The development endpoints: the customer completes or fails the action the fake provider
    /// requires, and the answer reaches the payment as a webhook's would.
    #[tracing::instrument(skip_all, fields(payment.id = %id, action = ?action))]
    pub async fn complete_action(
        &self,
        id: PaymentId,
        who: &Principal,
        action: CustomerAction,
    ) -> Result<Payment, ActionError> {
        let fake = match (&self.fake, self.dev_endpoints) {
            (Some(fake), true) => fake,
            _ => return Err(ActionError::Unavailable),
        };
        let payment = self.get(id, who).await?.ok_or(ActionError::NotFound(id))?;
        let intent_id = match (&payment.provider_payment_id, payment.status) {
            (Some(intent), PaymentStatus::RequiresAction) => intent.clone(),
            (_, status) => return Err(ActionError::WrongState(status)),
        };
        let intent = match fake.complete_action(&intent_id, action).await {
            Ok(intent) => intent,
            Err(ProviderError::WrongState(_)) => return Err(ActionError::WrongState(payment.status)),
            Err(e) => return Err(anyhow::Error::new(e).context("the fake provider failed").into()),
        };
        let news = ProviderNews {
            event_id: format!("evt_{}_{}", intent.id, intent.status.as_str()),
            intent_id,
            answer: ProviderAnswer::Intent(intent),
        };
        self.apply_news(self.provider.name(), news).await?;
        self.get(id, who).await?.ok_or(ActionError::NotFound(id))
    }

    /// Forgets the provider events received before `cutoff` (housekeeping).
    pub async fn forget_provider_events_before(&self, cutoff: chrono::DateTime<chrono::Utc>) -> anyhow::Result<u64> {
        persistence::forget_provider_events_before(&self.db, cutoff).await.context("failed to purge provider events")
    }

    /// The worker: acts on due payments until `shutdown`, woken once the event handlers' rows are
    /// committed (or news applied), else every `poll_interval` (a payment due later, another
    /// process's work, a lease that expired).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if self.round(&shutdown).await > 0 {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.timing.poll_interval) => {}
            }
        }
    }

    /// One round of the worker (see [`run`](Self::run)).
    #[cfg(test)]
    pub async fn work(&self) -> usize {
        self.round(&CancellationToken::new()).await
    }

    /// One round: the fake provider's due answers, then every due payment this worker can claim,
    /// until `shutdown`. Returns how much it did; failures are logged and retried later.
    async fn round(&self, shutdown: &CancellationToken) -> usize {
        let mut done = 0;
        if let Some(fake) = &self.fake {
            match fake.decide_due().await {
                Ok(intents) => {
                    for intent in intents {
                        let news = ProviderNews {
                            event_id: format!("evt_{}_{}", intent.id, intent.status.as_str()),
                            intent_id: intent.id.clone(),
                            answer: ProviderAnswer::Intent(intent),
                        };
                        match self.apply_news(fake_name(), news).await {
                            Ok(_) => done += 1,
                            Err(e) => {
                                tracing::warn!(error = format!("{e:#}"), "cannot apply the fake provider's answer")
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot decide the fake provider's intents"),
            }
        }
        let now = kernel::db::now();
        let due = match persistence::due(&self.db, now, 20).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read due payments");
                return done;
            }
        };
        for id in due {
            if shutdown.is_cancelled() {
                break;
            }
            match persistence::claim(&self.db, id, now, now + LEASE).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a payment");
                    continue;
                }
            }
            done += 1;
            if let Err(e) = self.process(id).await {
                tracing::warn!(payment.id = %id, error = format!("{e:#}"), "payment work failed; retried later");
            }
        }
        done
    }

    /// Acts on a claimed payment: the provider call first, outside any transaction, then its answer.
    #[tracing::instrument(skip_all, fields(payment.id = %id))]
    async fn process(&self, id: PaymentId) -> anyhow::Result<()> {
        let Some(payment) = persistence::find(&self.db, id, false).await.context("failed to load a payment")? else {
            return Ok(());
        };
        let key = |step: &str| idempotency_key(payment.order_id, payment.attempt, step);
        let answer = match (payment.status, payment.provider_payment_id.clone()) {
            (PaymentStatus::Creating, intent_id) => {
                let Some(method) = payment.payment_method.clone() else {
                    let failure = Failure::unusable("payment_method_missing", "No payment method was given.");
                    return self.settle(id, Ok(ProviderAnswer::Refused(failure))).await;
                };
                let intent_id = match intent_id {
                    Some(intent_id) => intent_id,
                    None => {
                        let new = NewIntent {
                            amount: payment.amount,
                            payment_method: method,
                            order_id: payment.order_id,
                            attempt: payment.attempt,
                        };
                        match self.provider.create(&new, &key("create")).await {
                            Ok(intent) => {
                                self.record_intent(id, &intent).await?;
                                intent.id
                            }
                            Err(e) => return self.settle(id, answer_of(Err(e))).await,
                        }
                    }
                };
                match self.provider.confirm(&intent_id, &key("confirm")).await {
                    // Confirmed before (a crash after the call): read back, never charged again.
                    Err(ProviderError::WrongState(_)) => answer_of(self.provider.retrieve(&intent_id).await),
                    answer => answer_of(answer),
                }
            }
            (PaymentStatus::Processing | PaymentStatus::RequiresAction, Some(intent_id)) => {
                answer_of(self.provider.retrieve(&intent_id).await)
            }
            (PaymentStatus::Canceling, None) => {
                // Nothing was confirmed (at worst an intent created unconfirmed): no money moved.
                Ok(ProviderAnswer::Refused(Failure::unusable(
                    "canceled",
                    "The order ended before the payment was sent.",
                )))
            }
            (PaymentStatus::Canceling, Some(intent_id)) => match self.provider.cancel(&intent_id, &key("cancel")).await
            {
                // Succeeded meanwhile: the answer says so, and the payment is refunded.
                Err(ProviderError::WrongState(_)) => answer_of(self.provider.retrieve(&intent_id).await),
                answer => answer_of(answer),
            },
            (PaymentStatus::Refunding, Some(intent_id)) => match self.provider.refund(&intent_id, &key("refund")).await
            {
                Ok(refund) if matches!(refund.status.as_str(), "succeeded" | "pending") => {
                    Ok(ProviderAnswer::Refunded { refund_id: refund.id })
                }
                Ok(refund) => Err(anyhow::anyhow!("the provider's refund is {}", refund.status)),
                Err(e) => Err(anyhow::Error::new(e).context("failed to refund")),
            },
            (status, _) => Err(anyhow::anyhow!("nothing to do for a payment {}", status.as_str())),
        };
        self.settle(id, answer).await
    }

    /// Records the intent's id before it is confirmed: a crash after this confirms the same intent.
    async fn record_intent(&self, id: PaymentId, intent: &Intent) -> anyhow::Result<()> {
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let Some(mut payment) = persistence::find(&txn, id, true).await.context("failed to load a payment")? else {
            return Ok(());
        };
        if payment.provider_payment_id.is_none() {
            payment.provider_payment_id = Some(intent.id.clone());
            persistence::update(&txn, &payment).await.context("failed to save a payment")?;
        }
        txn.commit().await.context("failed to record an intent")
    }

    /// Applies the worker's answer in one transaction with its events, and gives the lease back;
    /// without an answer (the provider unreachable), tries again later.
    async fn settle(&self, id: PaymentId, answer: anyhow::Result<ProviderAnswer>) -> anyhow::Result<()> {
        let now = kernel::db::now();
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let Some(mut payment) = persistence::find(&txn, id, true).await.context("failed to load a payment")? else {
            return Ok(());
        };
        let before = payment.status;
        let failed = match answer {
            Ok(answer) => {
                self.apply_provider_status(&txn, &mut payment, &answer).await?;
                None
            }
            Err(e) => Some(e),
        };
        if payment.status == before {
            // Nothing moved: ask again when the status says, or after a backoff if it says now.
            payment.next_action_at = match payment.status.next_action(now, self.reconcile_after()) {
                Some(at) if at <= now => Some(now + backoff(payment.provider_calls)),
                other => other,
            };
        }
        persistence::update_and_release(&txn, &payment).await.context("failed to save a payment")?;
        self.outbox.commit(txn).await.context("failed to commit a payment")?;
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn fake_name() -> &'static str {
    crate::provider::fake::NAME
}

/// A provider's answer to a call, as the payment reads it: an intent, a refusal (with its intent's
/// id when known), or no answer.
fn answer_of(result: Result<Intent, ProviderError>) -> anyhow::Result<ProviderAnswer> {
    match result {
        Ok(intent) => Ok(ProviderAnswer::Intent(intent)),
        Err(ProviderError::Refused { failure, intent: Some(intent) }) => Ok(ProviderAnswer::Intent(Intent {
            failure: Some(failure),
            status: IntentStatus::RequiresPaymentMethod,
            ..*intent
        })),
        Err(ProviderError::Refused { failure, intent: None }) => Ok(ProviderAnswer::Refused(failure)),
        Err(e) => Err(anyhow::Error::new(e).context("the provider gave no answer")),
    }
}

/// How long to wait before asking the provider again after the `calls`-th call left the payment
/// where it was: 1 s, doubling, at most 5 minutes.
fn backoff(calls: u32) -> chrono::Duration {
    chrono::Duration::seconds(1i64 << calls.saturating_sub(1).min(8)).min(chrono::Duration::minutes(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::web;
    use contracts::{Currency, IntegrationEvent};
    use kernel::testing::{Engine, TestDatabase, published_of};
    use kernel::{Envelope, Role};
    use migrations::MigratorTrait;
    use orders_contracts::{OrderCancelled, OrderPaymentRequested};
    use payments_contracts::{PaymentActionRequired, PaymentFailed, PaymentRefunded, PaymentSucceeded};

    use crate::NAME;
    use crate::events::{PaymentsEvents, routes};

    struct Shop {
        _database: TestDatabase,
        db: DatabaseConnection,
        fake: Arc<FakeProvider>,
        payments: web::Data<Payments>,
    }

    async fn shop(answer_delay_ms: u64) -> Shop {
        shop_on(Engine::Sqlite, answer_delay_ms).await.expect("SQLite is always there")
    }

    /// `None` when the engine's server is not there (the test skips).
    async fn shop_on(engine: Engine, answer_delay_ms: u64) -> Option<Shop> {
        let database = TestDatabase::fresh(engine).await?;
        let db = database.connect(NAME).await;
        migrations::Migrator::up(&db, None).await.expect("migrated");
        let fake = Arc::new(FakeProvider::new(db.clone(), Duration::from_millis(answer_delay_ms)));
        let timing = Timing { poll_interval: Duration::from_secs(1), reconcile_after: Duration::from_secs(60) };
        let payments =
            Payments::new(db.clone(), Outbox::new(NAME, db.clone()), fake.clone(), Some(fake.clone()), true, timing);
        Some(Shop { _database: database, db, fake, payments: web::Data::new(payments) })
    }

    impl Shop {
        async fn deliver<E: IntegrationEvent>(&self, event: &E) {
            let envelope = Envelope::new(event).expect("serialises");
            let txn = kernel::db::begin_write(&self.db).await.expect("a transaction");
            routes().bind(PaymentsEvents(self.payments.clone())).handle(&txn, &envelope).await.expect("handled");
            txn.commit().await.expect("committed");
        }

        /// Runs the worker until it finds nothing to do.
        async fn work(&self) {
            for _ in 0..10 {
                if self.payments.work().await == 0 {
                    return;
                }
            }
            panic!("the worker never ran out of work");
        }

        async fn payments_of(&self, order_id: Uuid) -> Vec<Payment> {
            persistence::of_order(&self.db, order_id, false).await.expect("read")
        }

        async fn only_payment(&self, order_id: Uuid) -> Payment {
            let mut payments = self.payments_of(order_id).await;
            assert_eq!(payments.len(), 1, "{payments:?}");
            payments.remove(0)
        }

        async fn succeeded(&self) -> Vec<PaymentSucceeded> {
            published_of(&self.db, NAME).await
        }

        async fn refunded(&self) -> Vec<PaymentRefunded> {
            published_of(&self.db, NAME).await
        }
    }

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").expect("valid")).expect("valid")
    }

    fn requested(order_id: Uuid, method: Option<&str>, attempt: u32) -> OrderPaymentRequested {
        OrderPaymentRequested {
            order_id,
            user_id: Uuid::from_u128(7),
            amount: eur(1299),
            payment_method: method.map(Into::into),
            attempt,
        }
    }

    fn cancelled(order_id: Uuid) -> OrderCancelled {
        OrderCancelled { order_id, user_id: Uuid::from_u128(7), items: Vec::new() }
    }

    fn owner() -> Principal {
        Principal { user_id: Uuid::from_u128(7), role: Role::Customer, email_verified: true }
    }

    #[tokio::test]
    async fn a_payment_succeeds_once_however_often_the_handler_and_the_worker_run() {
        let shop = shop(0).await;
        let order = Uuid::now_v7();
        shop.deliver(&requested(order, Some("pm_card_visa"), 1)).await;
        shop.deliver(&requested(order, Some("pm_card_visa"), 1)).await;
        shop.work().await;
        shop.work().await;
        let payment = shop.only_payment(order).await;
        assert_eq!(payment.status, PaymentStatus::Succeeded);
        assert!(payment.provider_payment_id.as_deref().is_some_and(|id| id.starts_with("pi_fake_")));
        let succeeded = shop.succeeded().await;
        assert_eq!(succeeded.len(), 1);
        assert_eq!((succeeded[0].order_id, succeeded[0].attempt, succeeded[0].amount), (order, 1, eur(1299)));
        // Another attempt of a paid order starts nothing.
        shop.deliver(&requested(order, Some("pm_card_visa"), 2)).await;
        shop.work().await;
        assert_eq!(shop.payments_of(order).await.len(), 1);
        assert_eq!(shop.succeeded().await.len(), 1);
    }

    #[tokio::test]
    async fn a_decline_fails_the_order_and_an_unusable_method_lets_another_be_tried() {
        let shop = shop(0).await;
        let declined = Uuid::now_v7();
        shop.deliver(&requested(declined, Some("pm_card_chargeDeclinedInsufficientFunds"), 1)).await;
        let unknown = Uuid::now_v7();
        shop.deliver(&requested(unknown, Some("card_4242"), 1)).await;
        let waiting = Uuid::now_v7();
        shop.deliver(&requested(waiting, None, 1)).await;
        shop.work().await;

        let failed: Vec<PaymentFailed> = published_of(&shop.db, NAME).await;
        let summary: Vec<_> = failed.iter().map(|f| (f.order_id, f.code.as_str(), f.retryable)).collect();
        assert_eq!(summary, [(declined, "insufficient_funds", false), (unknown, "resource_missing", true)]);
        let payment = shop.only_payment(declined).await;
        assert_eq!(
            (payment.status, payment.failure_code.as_deref()),
            (PaymentStatus::Failed, Some("insufficient_funds"))
        );
        assert_eq!(shop.only_payment(waiting).await.status, PaymentStatus::RequiresPaymentMethod, "nothing sent");

        shop.deliver(&requested(unknown, Some("pm_card_mastercard"), 2)).await;
        shop.work().await;
        let attempts: Vec<_> = shop.payments_of(unknown).await.iter().map(|p| p.status).collect();
        assert_eq!(attempts, [PaymentStatus::Failed, PaymentStatus::Succeeded]);
        assert_eq!(shop.succeeded().await.iter().map(|s| s.attempt).collect::<Vec<_>>(), [2]);
    }

    #[tokio::test]
    async fn an_order_cancelled_before_its_payment_charges_nothing() {
        let shop = shop(0).await;
        let order = Uuid::now_v7();
        shop.deliver(&requested(order, Some("pm_card_visa"), 1)).await;
        shop.deliver(&cancelled(order)).await;
        assert_eq!(shop.only_payment(order).await.status, PaymentStatus::Canceling);
        shop.work().await;
        let payment = shop.only_payment(order).await;
        assert_eq!((payment.status, payment.provider_payment_id), (PaymentStatus::Canceled, None));
        // A request after the end (a redelivery overtaken by the cancel) is never charged.
        let late = Uuid::now_v7();
        shop.deliver(&cancelled(late)).await;
        shop.deliver(&requested(late, Some("pm_card_visa"), 1)).await;
        shop.work().await;
        assert_eq!(shop.only_payment(late).await.status, PaymentStatus::Canceled);
        assert!(shop.succeeded().await.is_empty());

        // Waiting for the customer's action: the intent is canceled with the provider.
        let pending = Uuid::now_v7();
        shop.deliver(&requested(pending, Some("pm_card_threeDSecure2Required"), 1)).await;
        shop.work().await;
        let payment = shop.only_payment(pending).await;
        assert_eq!(payment.status, PaymentStatus::RequiresAction);
        let asked: Vec<PaymentActionRequired> = published_of(&shop.db, NAME).await;
        assert_eq!(asked.len(), 1);
        assert_eq!(Some(&asked[0].client_secret), payment.client_secret.as_ref());
        shop.deliver(&cancelled(pending)).await;
        shop.work().await;
        assert_eq!(shop.only_payment(pending).await.status, PaymentStatus::Canceled);
        let intent =
            shop.fake.retrieve(payment.provider_payment_id.as_deref().expect("an intent")).await.expect("read");
        assert_eq!(intent.status, IntentStatus::Canceled);
        assert!(shop.succeeded().await.is_empty());
    }

    #[tokio::test]
    async fn a_paid_order_cancelled_is_refunded_once() {
        let shop = shop(0).await;
        let order = Uuid::now_v7();
        shop.deliver(&requested(order, Some("pm_card_visa"), 1)).await;
        shop.work().await;
        shop.deliver(&cancelled(order)).await;
        shop.deliver(&cancelled(order)).await;
        shop.work().await;
        shop.work().await;
        let payment = shop.only_payment(order).await;
        assert_eq!(payment.status, PaymentStatus::Refunded);
        assert!(payment.refund_id.as_deref().is_some_and(|id| id.starts_with("re_fake_")));
        let refunded = shop.refunded().await;
        assert_eq!(refunded.len(), 1);
        assert_eq!((refunded[0].order_id, refunded[0].amount), (order, eur(1299)));
        assert_eq!(shop.succeeded().await.len(), 1);
    }

    #[tokio::test]
    async fn a_success_that_comes_after_the_order_ended_is_told_and_refunded() {
        let shop = shop(0).await;
        let order = Uuid::now_v7();
        shop.deliver(&requested(order, Some("pm_card_authenticationRequired"), 1)).await;
        shop.work().await;
        let intent = shop.only_payment(order).await.provider_payment_id.expect("an intent");
        // The order times out while the customer completes the action with the provider.
        shop.deliver(&cancelled(order)).await;
        shop.fake.complete_action(&intent, CustomerAction::Complete).await.expect("completed");
        // The worker's cancel finds the intent succeeded: it is paid, then refunded.
        shop.work().await;
        let payment = shop.only_payment(order).await;
        assert_eq!(payment.status, PaymentStatus::Refunded);
        assert!(payment.paid_at.is_some() && payment.refunded_at.is_some());
        assert_eq!(shop.succeeded().await.len(), 1, "the order shows it was paid");
        assert_eq!(shop.refunded().await.len(), 1);
        // The provider's news of the success, late, changes nothing more.
        let news = ProviderNews {
            event_id: "evt_late".into(),
            intent_id: intent.clone(),
            answer: ProviderAnswer::Intent(shop.fake.retrieve(&intent).await.expect("read")),
        };
        assert_eq!(shop.payments.apply_news("fake", news).await.expect("applied"), NewsApplied::Applied);
        shop.work().await;
        assert_eq!((shop.succeeded().await.len(), shop.refunded().await.len()), (1, 1));
    }

    #[tokio::test]
    async fn the_same_provider_event_twice_has_one_effect() {
        let shop = shop(0).await;
        let order = Uuid::now_v7();
        shop.deliver(&requested(order, Some("pm_card_threeDSecure2Required"), 1)).await;
        shop.work().await;
        let intent_id = shop.only_payment(order).await.provider_payment_id.expect("an intent");
        let intent = shop.fake.complete_action(&intent_id, CustomerAction::Complete).await.expect("completed");
        let news = ProviderNews { event_id: "evt_1".into(), intent_id, answer: ProviderAnswer::Intent(intent) };
        assert_eq!(shop.payments.apply_news("fake", news.clone()).await.expect("applied"), NewsApplied::Applied);
        assert_eq!(shop.payments.apply_news("fake", news.clone()).await.expect("applied"), NewsApplied::Repeat);
        assert_eq!(shop.only_payment(order).await.status, PaymentStatus::Succeeded);
        assert_eq!(shop.succeeded().await.len(), 1);
        // A new event saying the same is applied, and changes nothing.
        let again = ProviderNews { event_id: "evt_2".into(), ..news.clone() };
        assert_eq!(shop.payments.apply_news("fake", again).await.expect("applied"), NewsApplied::Applied);
        assert_eq!(shop.succeeded().await.len(), 1);
        let stranger = ProviderNews { event_id: "evt_3".into(), intent_id: "pi_other".into(), ..news };
        assert_eq!(shop.payments.apply_news("fake", stranger).await.expect("applied"), NewsApplied::UnknownPayment);
    }

    #[tokio::test]
    async fn the_customer_completes_or_fails_the_action_through_the_development_endpoints() {
        let shop = shop(0).await;
        let (paid, failed) = (Uuid::now_v7(), Uuid::now_v7());
        shop.deliver(&requested(paid, Some("pm_card_threeDSecure2Required"), 1)).await;
        shop.deliver(&requested(failed, Some("pm_card_threeDSecure2Required"), 1)).await;
        shop.work().await;
        let id = shop.only_payment(paid).await.id;
        let stranger = Principal { user_id: Uuid::from_u128(8), role: Role::Customer, email_verified: true };
        assert!(matches!(
            shop.payments.complete_action(id, &stranger, CustomerAction::Complete).await,
            Err(ActionError::NotFound(_))
        ));
        let payment = shop.payments.complete_action(id, &owner(), CustomerAction::Complete).await.expect("completed");
        assert_eq!(payment.status, PaymentStatus::Succeeded);
        assert!(matches!(
            shop.payments.complete_action(id, &owner(), CustomerAction::Fail).await,
            Err(ActionError::WrongState(PaymentStatus::Succeeded))
        ));

        let id = shop.only_payment(failed).await.id;
        let payment = shop.payments.complete_action(id, &owner(), CustomerAction::Fail).await.expect("failed");
        assert_eq!(payment.status, PaymentStatus::Failed);
        let failures: Vec<PaymentFailed> = published_of(&shop.db, NAME).await;
        assert_eq!(failures.len(), 1);
        assert_eq!(
            (failures[0].code.as_str(), failures[0].retryable),
            ("payment_intent_authentication_failure", false)
        );
        assert_eq!(shop.succeeded().await.len(), 1);
    }

    #[tokio::test]
    async fn a_delayed_answer_reaches_the_payment_the_way_a_webhook_does() {
        let shop = shop(30).await;
        let order = Uuid::now_v7();
        shop.deliver(&requested(order, Some("pm_card_visa"), 1)).await;
        shop.work().await;
        assert_eq!(shop.only_payment(order).await.status, PaymentStatus::Processing);
        assert!(shop.succeeded().await.is_empty());
        tokio::time::sleep(Duration::from_millis(60)).await;
        shop.work().await;
        shop.work().await;
        assert_eq!(shop.only_payment(order).await.status, PaymentStatus::Succeeded);
        assert_eq!(shop.succeeded().await.len(), 1);
    }

    /// The statements every engine runs differently: insert-or-ignore, the lease's conditional
    /// UPDATE, row locks.
    #[tokio::test]
    async fn a_payment_is_made_canceled_and_refunded_on_every_engine() {
        for engine in [Engine::Sqlite, Engine::Postgres, Engine::Mysql] {
            let Some(shop) = shop_on(engine, 0).await else { continue };
            let (paid, unpaid) = (Uuid::now_v7(), Uuid::now_v7());
            shop.deliver(&requested(paid, Some("pm_card_visa"), 1)).await;
            shop.deliver(&requested(paid, Some("pm_card_visa"), 1)).await;
            shop.deliver(&requested(unpaid, Some("pm_card_visa"), 1)).await;
            shop.deliver(&cancelled(unpaid)).await;
            shop.work().await;
            assert_eq!(shop.only_payment(paid).await.status, PaymentStatus::Succeeded, "{engine:?}");
            assert_eq!(shop.only_payment(unpaid).await.status, PaymentStatus::Canceled, "{engine:?}");
            shop.deliver(&cancelled(paid)).await;
            shop.work().await;
            assert_eq!(shop.only_payment(paid).await.status, PaymentStatus::Refunded, "{engine:?}");
            assert_eq!((shop.succeeded().await.len(), shop.refunded().await.len()), (1, 1), "{engine:?}");
            let id = shop.only_payment(paid).await.id;
            let now = kernel::db::now();
            let news = ProviderNews {
                event_id: "evt_1".into(),
                intent_id: "pi_none".into(),
                answer: ProviderAnswer::Refunded { refund_id: None },
            };
            assert_eq!(
                shop.payments.apply_news("fake", news.clone()).await.expect("applied"),
                NewsApplied::UnknownPayment
            );
            assert_eq!(
                shop.payments.apply_news("fake", news).await.expect("applied"),
                NewsApplied::Repeat,
                "{engine:?}"
            );
            // The claim is the statement's: two claims of a due payment, one wins.
            shop.deliver(&requested(Uuid::now_v7(), Some("pm_card_visa"), 1)).await;
            let due = persistence::due(&shop.db, now + LEASE, 10).await.expect("read");
            assert_eq!(due.len(), 1, "{engine:?}");
            assert_ne!(due[0], id);
            let later = kernel::db::now();
            assert!(persistence::claim(&shop.db, due[0], later, later + LEASE).await.expect("claimed"));
            assert!(!persistence::claim(&shop.db, due[0], later, later + LEASE).await.expect("refused"), "{engine:?}");
        }
    }

    #[tokio::test]
    async fn two_workers_claim_a_payment_once() {
        let shop = shop(0).await;
        let order = Uuid::now_v7();
        shop.deliver(&requested(order, Some("pm_card_visa"), 1)).await;
        let id = shop.only_payment(order).await.id;
        let now = kernel::db::now();
        assert!(persistence::claim(&shop.db, id, now, now + LEASE).await.expect("claimed"));
        assert!(!persistence::claim(&shop.db, id, now, now + LEASE).await.expect("refused"), "leased");
        assert_eq!(shop.payments.work().await, 0, "the worker leaves a leased payment alone");
    }
}
