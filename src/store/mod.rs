//! Persistent metadata: an embedded ACID database (redb) under the root dir.
//! Records are JSON values keyed by id, one table per kind. Every state change
//! is committed (fsync'd) before the RPC that made it returns.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store {op}: {message}")]
    Db { op: &'static str, message: String },
    #[error("metadata store: record {key} in {table} is corrupt: {source}")]
    Corrupt {
        table: &'static str,
        key: String,
        source: serde_json::Error,
    },
}

fn db_err<E: std::fmt::Display>(op: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Db {
        op,
        message: e.to_string(),
    }
}

/// The kinds of records kept.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Sandboxes,
    /// Small daemon-wide values (e.g. the pod CIDR from UpdateRuntimeConfig).
    Meta,
    Images,
    Containers,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Sandboxes => "sandboxes",
            Table::Meta => "meta",
            Table::Images => "images",
            Table::Containers => "containers",
        }
    }
    fn def(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.name())
    }
    const ALL: [Table; 4] = [
        Table::Sandboxes,
        Table::Meta,
        Table::Images,
        Table::Containers,
    ];
}

pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the database. redb locks the file, so a second
    /// daemon on the same root dir fails here instead of corrupting it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(db_err("create directory"))?;
        }
        let db = Database::create(path).map_err(db_err("open"))?;
        let txn = db.begin_write().map_err(db_err("begin"))?;
        for t in Table::ALL {
            txn.open_table(t.def()).map_err(db_err("create table"))?;
        }
        txn.commit().map_err(db_err("commit"))?;
        Ok(Store { db })
    }

    pub fn put<T: Serialize>(&self, table: Table, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(db_err("encode"))?;
        let txn = self.db.begin_write().map_err(db_err("begin"))?;
        {
            let mut t = txn.open_table(table.def()).map_err(db_err("open table"))?;
            t.insert(key, bytes.as_slice()).map_err(db_err("insert"))?;
        }
        txn.commit().map_err(db_err("commit"))
    }

    /// [`Store::put`] on a blocking thread: a commit waits for fsync, which
    /// must not stall the async workers.
    pub async fn put_async<T: Serialize + Send + 'static>(
        self: &Arc<Self>,
        table: Table,
        key: String,
        value: T,
    ) -> Result<(), StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.put(table, &key, &value))
            .await
            .map_err(db_err("task"))?
    }

    /// [`Store::delete`] on a blocking thread.
    pub async fn delete_async(
        self: &Arc<Self>,
        table: Table,
        key: String,
    ) -> Result<(), StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.delete(table, &key))
            .await
            .map_err(db_err("task"))?
    }

    pub fn delete(&self, table: Table, key: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err("begin"))?;
        {
            let mut t = txn.open_table(table.def()).map_err(db_err("open table"))?;
            t.remove(key).map_err(db_err("remove"))?;
        }
        txn.commit().map_err(db_err("commit"))
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err("begin read"))?;
        let t = txn.open_table(table.def()).map_err(db_err("open table"))?;
        let Some(v) = t.get(key).map_err(db_err("get"))? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                table: table.name(),
                key: key.to_string(),
                source,
            })
    }

    /// Every record of a table. A corrupt record is an error, not skipped:
    /// silently dropping it would lose a user's pod.
    pub fn load_all<T: DeserializeOwned>(
        &self,
        table: Table,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err("begin read"))?;
        let t = txn.open_table(table.def()).map_err(db_err("open table"))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db_err("iterate"))? {
            let (k, v) = item.map_err(db_err("read"))?;
            let key = k.value().to_string();
            let value =
                serde_json::from_slice(v.value()).map_err(|source| StoreError::Corrupt {
                    table: table.name(),
                    key: key.clone(),
                    source,
                })?;
            out.push((key, value));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        {
            let s = Store::open(&path).unwrap();
            s.put(Table::Sandboxes, "a", &vec![1, 2, 3]).unwrap();
            s.put(Table::Sandboxes, "b", &vec![4]).unwrap();
            s.delete(Table::Sandboxes, "b").unwrap();
            s.delete(Table::Sandboxes, "never-there").unwrap();
        }
        let s = Store::open(&path).unwrap();
        let all: Vec<(String, Vec<i32>)> = s.load_all(Table::Sandboxes).unwrap();
        assert_eq!(all, vec![("a".to_string(), vec![1, 2, 3])]);
        assert_eq!(
            s.get::<Vec<i32>>(Table::Sandboxes, "a").unwrap(),
            Some(vec![1, 2, 3])
        );
        assert_eq!(s.get::<Vec<i32>>(Table::Meta, "a").unwrap(), None);
    }

    #[test]
    fn second_open_of_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let _first = Store::open(&path).unwrap();
        assert!(Store::open(&path).is_err());
    }
}
