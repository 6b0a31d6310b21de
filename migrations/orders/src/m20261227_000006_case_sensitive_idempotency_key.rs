//! An `Idempotency-Key` compares exactly, as on SQLite and PostgreSQL: MariaDB/MySQL's default
//! collations ignore case, so `Key-1` would replay the order placed with `key-1`. Other engines:
//! nothing to do.

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
        // MODIFY keeps the primary key (user_id, key); a binary collation is finer, so no row can clash.
        let sql = "ALTER TABLE orders_idempotency MODIFY `key` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL";
        manager.get_connection().execute_unprepared(sql).await.map(drop)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        // Back to the table's default collation; fails if two keys of one customer differ only in case.
        let sql = "ALTER TABLE orders_idempotency MODIFY `key` VARCHAR(255) NOT NULL";
        manager.get_connection().execute_unprepared(sql).await.map(drop)
    }
}
