//! The embedded provider (`payments.provider = "fake"`, the default): Stripe's PaymentIntents
//! and Refunds kept in the module's own database, with Stripe's test payment methods and its
//! idempotency (a key used again replays the first answer).
//!
//! - `pm_card_chargeDeclined` is declined (`card_declined`), `pm_card_chargeDeclinedInsufficientFunds`
//!   too (`insufficient_funds`);
//! - `pm_card_threeDSecure2Required` and `pm_card_authenticationRequired` require an action, which
//!   [`FakeProvider::complete_action`] completes or fails (the development endpoints
//!   `POST /payments/{id}/confirm` and `/fail`);
//! - any other `pm_card_…` (`pm_card_visa`, `pm_card_mastercard`) succeeds;
//! - anything else is unknown to the provider: `resource_missing`, another method may be given.
//!
//! With `payments.fake.answer_delay_ms` > 0 a confirmation answers `processing` and decides that
//! much later ([`FakeProvider::decide_due`]), the answer then reaching the payment the way a
//! webhook does.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};

use super::{NewIntent, PaymentProvider, ProviderError, Refund};
use crate::domain::{Failure, Intent, IntentStatus};
use crate::persistence::{self, FakeIntentRow};

pub const NAME: &str = "fake";

/// What the customer does with an action the provider requires (3-D Secure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerAction {
    Complete,
    Fail,
}

pub struct FakeProvider {
    db: DatabaseConnection,
    answer_delay: Duration,
}

/// What a test payment method does when confirmed.
enum Behaviour {
    Succeed,
    Decline(Failure),
    RequireAction,
}

fn behaviour(payment_method: &str) -> Result<Behaviour, Failure> {
    match payment_method {
        "pm_card_chargeDeclined" => {
            Ok(Behaviour::Decline(Failure::declined("card_declined", "Your card was declined.")))
        }
        "pm_card_chargeDeclinedInsufficientFunds" => {
            Ok(Behaviour::Decline(Failure::declined("insufficient_funds", "Your card has insufficient funds.")))
        }
        "pm_card_threeDSecure2Required" | "pm_card_authenticationRequired" => Ok(Behaviour::RequireAction),
        method if method.starts_with("pm_card_") && method.len() > "pm_card_".len() => Ok(Behaviour::Succeed),
        method => Err(Failure::unusable("resource_missing", format!("No such PaymentMethod: '{method}'"))),
    }
}

/// What an answer changes of the intent.
enum Change<'a> {
    Nothing,
    Insert(&'a FakeIntentRow),
    Update(&'a FakeIntentRow),
}

/// An answer as remembered under its idempotency key.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Remembered {
    Intent { id: String },
    Refused { code: String, message: String, retryable: bool, intent: Option<String> },
    Refund { id: String, status: String },
}

impl FakeProvider {
    pub fn new(db: DatabaseConnection, answer_delay: Duration) -> Self {
        Self { db, answer_delay }
    }

    /// Replays the first answer to `key`: the intent as it is now (Stripe returns the object
    /// as it was then; what matters here is that nothing happens twice).
    async fn replay(&self, key: &str) -> Result<Option<Result<Intent, ProviderError>>, ProviderError> {
        let Some(json) = persistence::fake::remembered(&self.db, key).await.context("failed to read a key")? else {
            return Ok(None);
        };
        let remembered: Remembered = serde_json::from_str(&json).context("a remembered answer is corrupt")?;
        Ok(Some(match remembered {
            Remembered::Intent { id } => Ok(self.retrieve(&id).await?),
            Remembered::Refused { code, message, retryable, intent } => {
                let intent = match intent {
                    Some(id) => Some(Box::new(self.retrieve(&id).await?)),
                    None => None,
                };
                Err(ProviderError::Refused { failure: Failure { code, message, retryable }, intent })
            }
            Remembered::Refund { .. } => Err(ProviderError::WrongState(format!("the key {key} was used for a refund"))),
        }))
    }

    /// Remembers the answer to `key` and makes its change to the intent, in one transaction: a
    /// remembered answer is never apart from its effect (a crash between them would replay an
    /// answer the intent does not show). `false`, with nothing written, if a concurrent request
    /// remembered its answer first: that one wins.
    async fn answer(&self, key: &str, answer: &Remembered, change: Change<'_>) -> Result<bool, ProviderError> {
        let json = serde_json::to_string(answer).context("failed to serialise an answer")?;
        let now = kernel::db::now();
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        match persistence::fake::remember(&txn, key, &json, now).await {
            Ok(()) => {}
            Err(e) if kernel::db::is_unique_violation(&e) => return Ok(false),
            Err(e) => return Err(anyhow::Error::new(e).context("failed to remember a key").into()),
        }
        match change {
            Change::Nothing => {}
            Change::Insert(row) => {
                persistence::fake::insert(&txn, row, now).await.context("failed to insert an intent")?
            }
            Change::Update(row) => {
                persistence::fake::update(&txn, row, now).await.context("failed to save an intent")?
            }
        }
        txn.commit().await.context("failed to commit an answer")?;
        Ok(true)
    }

    /// The answer a concurrent request with `key` remembered first.
    async fn answer_of_winner(&self, key: &str) -> Result<Intent, ProviderError> {
        self.replay(key).await?.unwrap_or_else(|| Err(anyhow::anyhow!("a key vanished after a conflict").into()))
    }

    async fn load(&self, id: &str) -> Result<FakeIntentRow, ProviderError> {
        persistence::fake::find(&self.db, id, false).await.context("failed to read an intent")?.ok_or_else(|| {
            ProviderError::Refused {
                failure: Failure::unusable("resource_missing", format!("No such payment_intent: '{id}'")),
                intent: None,
            }
        })
    }

    async fn save(&self, row: &FakeIntentRow) -> Result<(), ProviderError> {
        persistence::fake::update(&self.db, row, kernel::db::now()).await.context("failed to save an intent")?;
        Ok(())
    }

    /// Decides the intent as its payment method says.
    fn decide(row: &mut FakeIntentRow) {
        row.decide_at = None;
        match behaviour(&row.payment_method) {
            Ok(Behaviour::Succeed) => row.status = IntentStatus::Succeeded.as_str().to_owned(),
            Ok(Behaviour::RequireAction) => row.status = IntentStatus::RequiresAction.as_str().to_owned(),
            Ok(Behaviour::Decline(failure)) | Err(failure) => {
                row.status = IntentStatus::RequiresPaymentMethod.as_str().to_owned();
                row.failure_code = Some(failure.code);
                row.failure_message = Some(failure.message);
            }
        }
    }

    /// The customer completed or failed the action an intent requires; the new intent, to apply
    /// as the provider's news. `WrongState` when it requires none.
    pub async fn complete_action(&self, id: &str, action: CustomerAction) -> Result<Intent, ProviderError> {
        let mut row = self.load(id).await?;
        if row.status != IntentStatus::RequiresAction.as_str() {
            return Err(ProviderError::WrongState(format!("the intent is {}", row.status)));
        }
        if action == CustomerAction::Complete {
            row.status = IntentStatus::Succeeded.as_str().to_owned();
        } else {
            row.status = IntentStatus::RequiresPaymentMethod.as_str().to_owned();
            row.failure_code = Some("payment_intent_authentication_failure".into());
            row.failure_message = Some(
                "The provided PaymentMethod has failed authentication. You can provide payment_method_data or a new \
                 PaymentMethod to attempt to fulfill this PaymentIntent again."
                    .into(),
            );
        }
        self.save(&row).await?;
        Ok(intent(&row))
    }

    /// Decides the intents whose delayed answer is due; returns them as decided, each once.
    pub async fn decide_due(&self) -> anyhow::Result<Vec<Intent>> {
        let now = kernel::db::now();
        let mut decided = Vec::new();
        for id in persistence::fake::due(&self.db, now).await.context("failed to read due intents")? {
            let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
            let Some(mut row) = persistence::fake::find(&txn, &id, true).await.context("failed to read an intent")?
            else {
                continue;
            };
            if row.decide_at.is_none_or(|at| at > now) {
                continue;
            }
            Self::decide(&mut row);
            persistence::fake::update(&txn, &row, now).await.context("failed to save an intent")?;
            txn.commit().await.context("failed to commit an intent")?;
            decided.push(intent(&row));
        }
        Ok(decided)
    }
}

fn intent(row: &FakeIntentRow) -> Intent {
    let status = IntentStatus::parse(&row.status).unwrap_or(IntentStatus::Processing);
    let failure = match (&row.failure_code, &row.failure_message, status) {
        (Some(code), message, IntentStatus::RequiresPaymentMethod) => Some(Failure {
            code: code.clone(),
            message: message.clone().unwrap_or_default(),
            retryable: code == "resource_missing",
        }),
        _ => None,
    };
    Intent { id: row.id.clone(), status, client_secret: Some(row.client_secret.clone()), failure }
}

#[async_trait]
impl PaymentProvider for FakeProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn create(&self, new: &NewIntent, key: &str) -> Result<Intent, ProviderError> {
        if let Some(replayed) = self.replay(key).await? {
            return replayed;
        }
        if let Err(failure) = behaviour(&new.payment_method) {
            let refused = Remembered::Refused {
                code: failure.code.clone(),
                message: failure.message.clone(),
                retryable: failure.retryable,
                intent: None,
            };
            if !self.answer(key, &refused, Change::Nothing).await? {
                return self.answer_of_winner(key).await;
            }
            return Err(ProviderError::Refused { failure, intent: None });
        }
        let id = format!("pi_fake_{}", uuid::Uuid::now_v7().simple());
        let row = FakeIntentRow {
            client_secret: format!("{id}_secret_{}", uuid::Uuid::new_v4().simple()),
            id,
            amount: new.amount.amount_minor(),
            currency: new.amount.currency().code().to_ascii_lowercase(),
            payment_method: new.payment_method.clone(),
            status: IntentStatus::RequiresConfirmation.as_str().to_owned(),
            failure_code: None,
            failure_message: None,
            refund_id: None,
            decide_at: None,
        };
        // Of two concurrent creates with one key, the first remembered is the answer to both (the
        // other's intent is never written).
        if !self.answer(key, &Remembered::Intent { id: row.id.clone() }, Change::Insert(&row)).await? {
            return self.answer_of_winner(key).await;
        }
        Ok(intent(&row))
    }

    async fn confirm(&self, id: &str, key: &str) -> Result<Intent, ProviderError> {
        if let Some(replayed) = self.replay(key).await? {
            return replayed;
        }
        let mut row = self.load(id).await?;
        match IntentStatus::parse(&row.status) {
            Some(IntentStatus::RequiresConfirmation) => {}
            Some(IntentStatus::Canceled) => return Err(ProviderError::WrongState("the intent is canceled".into())),
            // Confirmed already: read back, never charged again.
            _ => return Ok(intent(&row)),
        }
        let delayed =
            !self.answer_delay.is_zero() && !matches!(behaviour(&row.payment_method), Ok(Behaviour::RequireAction));
        if delayed {
            row.status = IntentStatus::Processing.as_str().to_owned();
            row.decide_at = Some(kernel::db::now() + self.answer_delay);
        } else {
            Self::decide(&mut row);
        }
        let answer = intent(&row);
        let remembered = match &answer.failure {
            Some(f) => Remembered::Refused {
                code: f.code.clone(),
                message: f.message.clone(),
                retryable: f.retryable,
                intent: Some(row.id.clone()),
            },
            None => Remembered::Intent { id: row.id.clone() },
        };
        if !self.answer(key, &remembered, Change::Update(&row)).await? {
            return self.answer_of_winner(key).await;
        }
        match answer.failure.clone() {
            // Stripe answers a decline with HTTP 402 naming the intent.
            Some(failure) => Err(ProviderError::Refused { failure, intent: Some(Box::new(answer)) }),
            None => Ok(answer),
        }
    }

    async fn cancel(&self, id: &str, key: &str) -> Result<Intent, ProviderError> {
        if let Some(replayed) = self.replay(key).await? {
            return replayed;
        }
        let mut row = self.load(id).await?;
        match IntentStatus::parse(&row.status) {
            Some(IntentStatus::Succeeded) => return Err(ProviderError::WrongState("the intent succeeded".into())),
            Some(IntentStatus::Canceled) => return Ok(intent(&row)),
            _ => {}
        }
        row.status = IntentStatus::Canceled.as_str().to_owned();
        row.decide_at = None;
        if !self.answer(key, &Remembered::Intent { id: row.id.clone() }, Change::Update(&row)).await? {
            return self.answer_of_winner(key).await;
        }
        Ok(intent(&row))
    }

    async fn refund(&self, id: &str, key: &str) -> Result<Refund, ProviderError> {
        if let Some(json) = persistence::fake::remembered(&self.db, key).await.context("failed to read a key")?
            && let Ok(Remembered::Refund { id, status }) = serde_json::from_str(&json)
        {
            return Ok(Refund { id: Some(id), status });
        }
        let mut row = self.load(id).await?;
        if row.status != IntentStatus::Succeeded.as_str() {
            return Err(ProviderError::WrongState(format!("the intent is {}", row.status)));
        }
        if let Some(refund) = &row.refund_id {
            // Stripe refuses a second full refund (`charge_already_refunded`): the first stands.
            return Ok(Refund { id: Some(refund.clone()), status: "succeeded".into() });
        }
        let refund_id = format!("re_fake_{}", uuid::Uuid::now_v7().simple());
        row.refund_id = Some(refund_id.clone());
        let remembered = Remembered::Refund { id: refund_id.clone(), status: "succeeded".into() };
        if !self.answer(key, &remembered, Change::Update(&row)).await? {
            return Box::pin(self.refund(id, key)).await;
        }
        Ok(Refund { id: Some(refund_id), status: "succeeded".into() })
    }

    async fn retrieve(&self, id: &str) -> Result<Intent, ProviderError> {
        Ok(intent(&self.load(id).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Money;
    use kernel::testing::{Engine, TestDatabase};
    use migrations::MigratorTrait;

    async fn fake(delay_ms: u64) -> (TestDatabase, FakeProvider) {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite is always there");
        let db = database.connect(crate::NAME).await;
        migrations::Migrator::up(&db, None).await.expect("migrated");
        (database, FakeProvider::new(db, Duration::from_millis(delay_ms)))
    }

    fn new(method: &str) -> NewIntent {
        NewIntent {
            amount: Money::new(1299, contracts::Currency::parse("EUR").expect("valid")).expect("valid"),
            payment_method: method.into(),
            order_id: uuid::Uuid::now_v7(),
            attempt: 1,
        }
    }

    async fn pay(fake: &FakeProvider, method: &str) -> Result<Intent, ProviderError> {
        let created = fake.create(&new(method), &format!("{method}:create")).await?;
        assert_eq!(created.status, IntentStatus::RequiresConfirmation);
        fake.confirm(&created.id, &format!("{method}:confirm")).await
    }

    fn declined_with(result: Result<Intent, ProviderError>) -> (String, bool, Option<IntentStatus>) {
        match result {
            Err(ProviderError::Refused { failure, intent }) => {
                (failure.code, failure.retryable, intent.map(|i| i.status))
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    #[tokio::test]
    async fn test_cards_succeed_or_decline_with_their_reasons() {
        let (_db, fake) = fake(0).await;
        assert_eq!(pay(&fake, "pm_card_visa").await.expect("paid").status, IntentStatus::Succeeded);
        assert_eq!(pay(&fake, "pm_card_mastercard").await.expect("paid").status, IntentStatus::Succeeded);
        assert_eq!(
            declined_with(pay(&fake, "pm_card_chargeDeclined").await),
            ("card_declined".into(), false, Some(IntentStatus::RequiresPaymentMethod))
        );
        assert_eq!(
            declined_with(pay(&fake, "pm_card_chargeDeclinedInsufficientFunds").await),
            ("insufficient_funds".into(), false, Some(IntentStatus::RequiresPaymentMethod))
        );
        let unknown = fake.create(&new("tok_visa"), "unknown:create").await;
        assert_eq!(declined_with(unknown), ("resource_missing".into(), true, None));
        let unknown = fake.create(&new("pm_unknown"), "pm_unknown:create").await;
        assert_eq!(declined_with(unknown), ("resource_missing".into(), true, None), "only pm_card_… are known");
    }

    #[tokio::test]
    async fn an_action_is_completed_or_failed_once() {
        let (_db, fake) = fake(0).await;
        let pending = pay(&fake, "pm_card_threeDSecure2Required").await.expect("answered");
        assert_eq!(pending.status, IntentStatus::RequiresAction);
        assert!(pending.client_secret.as_deref().is_some_and(|s| s.starts_with(&format!("{}_secret_", pending.id))));
        let done = fake.complete_action(&pending.id, CustomerAction::Complete).await.expect("completed");
        assert_eq!(done.status, IntentStatus::Succeeded);
        assert!(matches!(
            fake.complete_action(&pending.id, CustomerAction::Fail).await,
            Err(ProviderError::WrongState(_))
        ));

        let pending = pay(&fake, "pm_card_authenticationRequired").await.expect("answered");
        let failed = fake.complete_action(&pending.id, CustomerAction::Fail).await.expect("failed");
        assert_eq!(failed.status, IntentStatus::RequiresPaymentMethod);
        let failure = failed.failure.expect("a failure");
        assert_eq!((failure.code.as_str(), failure.retryable), ("payment_intent_authentication_failure", false));
    }

    #[tokio::test]
    async fn a_key_used_again_replays_the_first_answer_and_never_charges_twice() {
        let (_db, fake) = fake(0).await;
        let order = new("pm_card_visa");
        let first = fake.create(&order, "o:1:create").await.expect("created");
        let again = fake.create(&order, "o:1:create").await.expect("replayed");
        assert_eq!(first.id, again.id, "one intent for one key");
        let paid = fake.confirm(&first.id, "o:1:confirm").await.expect("paid");
        let replayed = fake.confirm(&first.id, "o:1:confirm").await.expect("replayed");
        let other_key = fake.confirm(&first.id, "o:1:confirm-again").await.expect("read back");
        assert_eq!(
            (paid.status, replayed.status, other_key.status),
            (IntentStatus::Succeeded, IntentStatus::Succeeded, IntentStatus::Succeeded)
        );
        assert!(matches!(fake.cancel(&first.id, "o:1:cancel").await, Err(ProviderError::WrongState(_))));

        let refund = fake.refund(&first.id, "o:1:refund").await.expect("refunded");
        assert_eq!(fake.refund(&first.id, "o:1:refund").await.expect("replayed"), refund);
        assert_eq!(fake.refund(&first.id, "o:1:refund-again").await.expect("the first stands").id, refund.id);

        let declined = new("pm_card_chargeDeclined");
        let created = fake.create(&declined, "d:1:create").await.expect("created");
        let first = declined_with(fake.confirm(&created.id, "d:1:confirm").await);
        assert_eq!(declined_with(fake.confirm(&created.id, "d:1:confirm").await), first, "a decline replays too");
    }

    #[tokio::test]
    async fn a_delayed_answer_is_processing_until_it_is_decided_once() {
        let (_db, fake) = fake(30).await;
        let processing = pay(&fake, "pm_card_visa").await.expect("answered");
        assert_eq!(processing.status, IntentStatus::Processing);
        assert!(fake.decide_due().await.expect("decided").is_empty(), "not yet");
        tokio::time::sleep(Duration::from_millis(60)).await;
        let decided = fake.decide_due().await.expect("decided");
        assert_eq!(decided.len(), 1);
        assert_eq!((decided[0].id.as_str(), decided[0].status), (processing.id.as_str(), IntentStatus::Succeeded));
        assert!(fake.decide_due().await.expect("decided").is_empty(), "once");
    }
}
