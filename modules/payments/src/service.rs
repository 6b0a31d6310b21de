//! The payments module's use cases, the ones an event triggers included. Each write is one
//! transaction: the state change and its events.

use anyhow::Context;
use kernel::{Envelope, Outbox};
use payments_contracts::NoteAdded;
use sea_orm::{DatabaseConnection, DatabaseTransaction};

use crate::domain::{Note, NoteId, NoteText};
use crate::persistence;

pub struct Payments {
    db: DatabaseConnection,
    outbox: Outbox<payments_contracts::Payments>,
    max_note_length: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AddNoteError {
    #[error("the note {0}")]
    Invalid(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl Payments {
    pub fn new(db: DatabaseConnection, outbox: Outbox, max_note_length: usize) -> Self {
        Self { db, outbox: outbox.bind(), max_note_length }
    }

    /// Adds a note; publishes `NoteAdded`.
    #[tracing::instrument(skip_all)]
    pub async fn add_note(&self, text: &str) -> Result<Note, AddNoteError> {
        let text = NoteText::parse(text, self.max_note_length).map_err(AddNoteError::Invalid)?;
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let note = self.write(&txn, text, None).await?;
        self.outbox.commit(txn).await.context("failed to commit a note")?;
        Ok(note)
    }

    /// A user registered (`UserRegistered`): a note says so, in the inbox's transaction.
    #[tracing::instrument(skip_all, fields(user.id = %user_id))]
    pub async fn note_registration(
        &self,
        txn: &DatabaseTransaction,
        user_id: uuid::Uuid,
        cause: &Envelope,
    ) -> anyhow::Result<()> {
        let text = NoteText::parse(&format!("user {user_id} registered"), self.max_note_length.max(64))
            .map_err(anyhow::Error::msg)?;
        self.write(txn, text, Some(cause)).await.map(drop)
    }

    async fn write(&self, txn: &DatabaseTransaction, text: NoteText, cause: Option<&Envelope>) -> anyhow::Result<Note> {
        let note = Note { id: NoteId::generate(), text, created_at: kernel::db::now() };
        persistence::insert(txn, &note).await.context("failed to insert a note")?;
        let event = NoteAdded { note_id: note.id.as_uuid(), text: note.text.as_str().to_owned() };
        self.outbox.publish(txn, &event, cause).await?;
        tracing::info!(note.id = %note.id, "note added");
        Ok(note)
    }

    pub async fn notes(&self) -> anyhow::Result<u64> {
        persistence::count(&self.db).await.context("failed to count notes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::testing::{Engine, TestDatabase, published_of};
    use migrations::MigratorTrait;

    #[tokio::test]
    async fn adding_a_note_stores_it_and_publishes_note_added_in_one_transaction() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite is always there");
        let db = database.connect(crate::NAME).await;
        migrations::Migrator::up(&db, None).await.expect("migrated");
        let service = Payments::new(db.clone(), Outbox::new(crate::NAME, db.clone()), 20);

        let note = service.add_note("  hello ").await.expect("added");
        assert_eq!(note.text.as_str(), "hello");
        assert!(matches!(service.add_note("far more than twenty characters").await, Err(AddNoteError::Invalid(_))));

        assert_eq!(service.notes().await.expect("counted"), 1, "the refused note wrote nothing");
        let published = published_of::<NoteAdded>(&db, crate::NAME).await;
        assert_eq!(published, [NoteAdded { note_id: note.id.as_uuid(), text: "hello".into() }]);
    }
}
