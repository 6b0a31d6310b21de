//! The kernel's tables, created in every module's database under the module's prefix.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::{instant, instant_null};

/// `<module>_outbox`, `<module>_outbox_lock`, `<module>_inbox` and `<module>_dead_letters`.
pub struct KernelTables {
    module: &'static str,
}

impl KernelTables {
    pub fn new(module: &'static str) -> Self {
        Self { module }
    }

    fn table(&self, suffix: &str) -> Alias {
        Alias::new(format!("{}_{suffix}", self.module))
    }
}

impl MigrationName for KernelTables {
    fn name(&self) -> &str {
        "m20261126_000001_kernel_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for KernelTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let outbox = self.table("outbox");
        manager
            .create_table(
                Table::create()
                    .table(outbox.clone())
                    .if_not_exists()
                    .col(big_pk_auto("seq"))
                    .col(string_len_uniq("event_id", 36))
                    .col(string_len("event", 100))
                    .col(integer("version"))
                    .col(string_len("routing_key", 200))
                    .col(text("payload"))
                    .col(instant(manager, "created_at"))
                    .col(instant_null(manager, "published_at"))
                    .col(integer("attempts").default(0))
                    .col(text_null("last_error"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(format!("idx_{}_outbox_pending", self.module))
                    .table(outbox)
                    .col("published_at")
                    .col("seq")
                    .to_owned(),
            )
            .await?;

        // One row: the relay that locks it is the only one publishing (FOR UPDATE SKIP LOCKED).
        let lock = self.table("outbox_lock");
        manager
            .create_table(
                Table::create().table(lock.clone()).if_not_exists().col(integer("id").primary_key()).to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(lock)
                    .columns(["id"])
                    .values_panic([1.into()])
                    .on_conflict(OnConflict::column("id").do_nothing_on(["id"]).to_owned())
                    .to_owned(),
            )
            .await?;

        let inbox = self.table("inbox");
        manager
            .create_table(
                Table::create()
                    .table(inbox.clone())
                    .if_not_exists()
                    .col(big_pk_auto("seq"))
                    .col(string_len("consumer", 100))
                    .col(string_len("event_id", 36))
                    .col(string_len("event", 100))
                    .col(integer("version"))
                    .col(text("payload"))
                    .col(instant(manager, "received_at"))
                    .col(instant_null(manager, "processed_at"))
                    .col(integer("attempts").default(0))
                    .col(instant_null(manager, "next_attempt_at"))
                    .col(text_null("last_error"))
                    .col(boolean("dead").default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(format!("uq_{}_inbox_event", self.module))
                    .table(inbox.clone())
                    .col("consumer")
                    .col("event_id")
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(format!("idx_{}_inbox_queue", self.module))
                    .table(inbox)
                    .col("consumer")
                    .col("processed_at")
                    .col("seq")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(self.table("dead_letters"))
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(string_len("consumer", 100))
                    .col(string_len("event_id", 36))
                    .col(string_len("event", 100))
                    .col(text("payload"))
                    .col(text("error"))
                    .col(integer("attempts"))
                    .col(instant(manager, "failed_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for suffix in ["dead_letters", "inbox", "outbox_lock", "outbox"] {
            manager.drop_table(Table::drop().table(self.table(suffix)).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
