//! `<module>_jobs`: the durable background jobs of a module that runs any (the kernel's `jobs`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::{instant, instant_null};

/// The jobs table, under the module's prefix. A module that runs jobs adds it to its Migrator
/// after [`KernelTables`](crate::KernelTables).
pub struct JobTables {
    module: &'static str,
}

impl JobTables {
    pub fn new(module: &'static str) -> Self {
        Self { module }
    }

    fn table(&self) -> Alias {
        Alias::new(format!("{}_jobs", self.module))
    }
}

impl MigrationName for JobTables {
    fn name(&self) -> &str {
        "m20261128_100001_kernel_jobs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for JobTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(self.table())
                    .if_not_exists()
                    .col(string_len("id", 36).primary_key())
                    .col(string_len("job_type", 100))
                    // Two jobs of one type with the same key are one job (`Job::unique_key`).
                    .col(string_len_null("unique_key", 200))
                    .col(text("payload"))
                    // queued, running, done, failed.
                    .col(string_len("status", 16))
                    .col(integer("attempts").default(0))
                    // When it is due (queued), or when its lease ends (running): a worker claims
                    // queued and running rows whose time has come, so a crashed worker's job is
                    // taken up again once its lease is over.
                    .col(instant(manager, "run_at"))
                    // When its retry clock started: enqueued, or retried by an admin.
                    .col(instant(manager, "queued_at"))
                    .col(instant(manager, "created_at"))
                    .col(instant_null(manager, "finished_at"))
                    .col(text_null("last_error"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(format!("uq_{}_jobs_unique", self.module))
                    .table(self.table())
                    .col("job_type")
                    .col("unique_key")
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(format!("idx_{}_jobs_due", self.module))
                    .table(self.table())
                    .col("status")
                    .col("run_at")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(self.table()).if_exists().to_owned()).await
    }
}

/// Adds `lane` to the jobs table: jobs of one lane run one at a time, in the order they were
/// queued (`Job::lane`). A module that runs jobs adds it after [`JobTables`].
pub struct JobLanes {
    module: &'static str,
}

impl JobLanes {
    pub fn new(module: &'static str) -> Self {
        Self { module }
    }
}

impl MigrationName for JobLanes {
    fn name(&self) -> &str {
        "m20261128_200001_kernel_job_lanes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for JobLanes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Alias::new(format!("{}_jobs", self.module));
        manager
            .alter_table(Table::alter().table(table.clone()).add_column(string_len_null("lane", 200)).to_owned())
            .await?;
        // A claim looks for an earlier unfinished job of the candidate's lane.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(format!("idx_{}_jobs_lane", self.module))
                    .table(table)
                    .col("lane")
                    .col("id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Alias::new(format!("{}_jobs", self.module));
        manager
            .drop_index(Index::drop().name(format!("idx_{}_jobs_lane", self.module)).table(table.clone()).to_owned())
            .await?;
        manager.alter_table(Table::alter().table(table).drop_column("lane").to_owned()).await
    }
}
