//! [`Isolation`]: what makes a stack private on shared services — its own
//! Postgres schema (migrated), its own RabbitMQ queue prefix (declared),
//! its own state directory — and its teardown: schema dropped, queues
//! deleted, directory removed, unless asked to keep them.

use std::path::{Path, PathBuf};
use std::time::Duration;
use store::prelude::*;

use broker::{RabbitBroker, RabbitConfig};
use store::{PgStore, Store};
use tempfile::TempDir;
use uuid::Uuid;

use crate::env::Env;
use crate::error::{Error, Result};

/// Time allowed to reach a service, and for each step of a teardown.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the shared services are, and the queue arguments every process of
/// one stack must agree on (RabbitMQ refuses a redeclare with others).
#[derive(Clone)]
pub struct Services {
    pub database_url: String,
    /// Its `prefix` is replaced by each isolation's own.
    pub rabbit: RabbitConfig,
    /// What every process needs besides the isolation's own variables to
    /// reach the services as this one does (e.g. TLS files).
    pub env: Env,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The database URL may hold a password.
        f.debug_struct("Services")
            .field("rabbit", &self.rabbit)
            .finish_non_exhaustive()
    }
}

/// How to name an isolation and where its directory goes.
#[derive(Clone, Debug)]
pub struct Naming {
    /// Stem of the schema (`STEM_<16 hex>`) and queue prefix (`STEM-<16 hex>`).
    pub stem: String,
    /// The directory is `PARENT/DIR_PREFIX<random>`.
    pub dir_prefix: String,
    /// Parent of the directory; the system's temp dir when `None`.
    pub parent: Option<PathBuf>,
    /// The aggregator partitions of the private schema (fixed with it);
    /// the default count when `None`.
    pub partitions: Option<u16>,
}

/// What a teardown leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Drop the schema, delete the queues, remove the directory.
    Nothing,
    /// As `Nothing`, but keep the directory (logs of a failed test).
    Dir,
    /// Keep everything, to look at it afterwards.
    Everything,
}

/// A private schema, queue prefix and directory; see the module docs.
#[derive(Debug)]
pub struct Isolation {
    schema: String,
    prefix: String,
    dir: TempDir,
    store: PgStore,
    broker: RabbitBroker,
    services: Services,
}

impl Isolation {
    /// Creates the directory, the schema (with the migrations applied) and
    /// the queues. A service that does not answer is an error naming it.
    pub async fn create(services: &Services, naming: &Naming) -> Result<Isolation> {
        let id = Uuid::new_v4().simple().to_string();
        let schema = format!("{}_{}", naming.stem, &id[..16]);
        let prefix = format!("{}-{}", naming.stem, &id[..16]);
        let mut builder = tempfile::Builder::new();
        builder.prefix(&naming.dir_prefix);
        let dir = match &naming.parent {
            Some(parent) => {
                std::fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
                builder.tempdir_in(parent)
            }
            None => builder.tempdir(),
        }
        .map_err(Error::io(
            "cannot create a directory in",
            naming.parent.clone().unwrap_or_else(std::env::temp_dir),
        ))?;

        let store = connect_store(&services.database_url, &schema, naming.partitions).await?;
        let partitions = match store.partitions().await {
            Ok(n) => n,
            Err(source) => {
                let _ = store.drop_schema().await;
                return Err(Error::Postgres {
                    target: pg_target(&services.database_url),
                    source,
                });
            }
        };
        let rabbit = RabbitConfig {
            prefix: prefix.clone(),
            partitions,
            ..services.rabbit.clone()
        };
        let broker = match connect_broker(rabbit.clone()).await {
            Ok(b) => b,
            Err(e) => {
                let _ = store.drop_schema().await;
                return Err(e);
            }
        };
        Ok(Isolation {
            schema,
            prefix,
            dir,
            store,
            broker,
            services: Services {
                database_url: services.database_url.clone(),
                rabbit,
                env: services.env.clone(),
            },
        })
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The private directory (removed by a teardown).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `DIR/worker-data`: the processes' `WORKER_DATA_DIR`.
    pub fn worker_data_dir(&self) -> PathBuf {
        self.dir().join("worker-data")
    }

    /// The store, on the private schema.
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// A broker on the private queues, with the stack's queue arguments.
    pub fn broker(&self) -> &RabbitBroker {
        &self.broker
    }

    /// What a process needs to join this stack: the services, the schema,
    /// the queue prefix and arguments, the state directory.
    pub fn env(&self) -> Env {
        let rabbit = &self.services.rabbit;
        self.services.env.with(&Env::from_pairs(&[
            ("DATABASE_URL", self.services.database_url.clone()),
            ("RABBITMQ_URL", rabbit.url.clone()),
            ("DB_SCHEMA", self.schema.clone()),
            ("QUEUE_PREFIX", self.prefix.clone()),
            (
                "WORKER_DATA_DIR",
                self.worker_data_dir().display().to_string(),
            ),
            ("RETRY_DELAY_MS", rabbit.retry_delay.as_millis().to_string()),
            ("DELIVERY_LIMIT", rabbit.delivery_limit.to_string()),
        ]))
    }

    /// Drops what `keep` does not keep; returns the directory if kept.
    /// Every step is tried (each within a time limit); the first failure
    /// is returned. Stop the stack's processes first, or their reconnect
    /// loops declare the queues again.
    pub async fn teardown(self, keep: Keep) -> Result<Option<PathBuf>> {
        if keep == Keep::Everything {
            return Ok(Some(self.dir.keep()));
        }
        let target = self.services.rabbit.redacted_url();
        let queues =
            match tokio::time::timeout(SERVICE_TIMEOUT, self.broker.delete_topology()).await {
                Ok(r) => r.map_err(|source| Error::Rabbit { target, source }),
                Err(_) => Err(no_answer("RabbitMQ", self.services.rabbit.redacted_url())),
            };
        drop(self.broker);
        let schema = match tokio::time::timeout(SERVICE_TIMEOUT, self.store.drop_schema()).await {
            Ok(r) => r.map_err(|source| Error::Postgres {
                target: pg_target(&self.services.database_url),
                source,
            }),
            Err(_) => Err(no_answer(
                "Postgres",
                pg_target(&self.services.database_url),
            )),
        };
        let path = self.dir.path().to_owned();
        let dir = if keep == Keep::Dir {
            Ok(Some(self.dir.keep()))
        } else {
            self.dir
                .close()
                .map(|()| None)
                .map_err(Error::io("cannot remove", path))
        };
        queues?;
        schema?;
        dir
    }
}

async fn connect_store(url: &str, schema: &str, partitions: Option<u16>) -> Result<PgStore> {
    let target = pg_target(url);
    let store = PgStore::connect_with_schema(url, schema)
        .await
        .map_err(|source| Error::Postgres {
            target: target.clone(),
            source,
        })?;
    let migrated = match store.migrate().await {
        Ok(()) => store.init_partitions(partitions).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match migrated {
        Ok(()) => Ok(store),
        Err(source) => {
            let _ = store.drop_schema().await;
            Err(Error::Postgres { target, source })
        }
    }
}

async fn connect_broker(config: RabbitConfig) -> Result<RabbitBroker> {
    let target = config.redacted_url();
    match tokio::time::timeout(SERVICE_TIMEOUT, RabbitBroker::connect(config)).await {
        Ok(r) => r.map_err(|source| Error::Rabbit { target, source }),
        Err(_) => Err(no_answer("RabbitMQ", target)),
    }
}

fn no_answer(service: &'static str, target: String) -> Error {
    Error::NoAnswer {
        service,
        target,
        timeout: SERVICE_TIMEOUT,
    }
}

/// `host:port/database` of a Postgres URL, never its password.
fn pg_target(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    rest.rsplit_once('@').map_or(rest, |(_, r)| r).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_target_hides_the_password() {
        assert_eq!(pg_target("postgres://u:s3cret@db:5432/x"), "db:5432/x");
        assert_eq!(pg_target("postgres://db/x?password=p"), "db/x");
    }
}
