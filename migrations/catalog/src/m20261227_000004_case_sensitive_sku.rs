//! A sku compares exactly, as on SQLite and PostgreSQL: MariaDB/MySQL's default collations ignore
//! case, so `ABC-1` and `abc-1` would clash in the unique index. Other engines: nothing to do.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        // MODIFY keeps the unique index; a binary collation is finer, so no row can clash.
        let sql =
            "ALTER TABLE catalog_products MODIFY sku VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL";
        manager.get_connection().execute_unprepared(sql).await.map(drop)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        // Back to the table's default collation; fails if two skus now differ only in case.
        let sql = "ALTER TABLE catalog_products MODIFY sku VARCHAR(64) NOT NULL";
        manager.get_connection().execute_unprepared(sql).await.map(drop)
    }
}
