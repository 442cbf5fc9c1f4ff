//! The cluster change follower: on a shared store (PostgreSQL), every other instance's write
//! arrives as a notification naming the rows it wrote; they are read again and applied to this
//! instance's account snapshot and directory. A periodic full resynchronisation covers lost
//! notifications, and a broken feed is reconnected. Requests keep being decided from the last
//! snapshot meanwhile.

use super::Accounts;
use super::directory::Directory;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Interval of the full resynchronisation that covers lost notifications.
const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// Re-reads accounts, bindings and the directory from the shared store.
async fn resync(
    store: &dyn crate::store::Store,
    accounts: &Accounts,
    directory: &Directory,
) -> Result<(), crate::store::StoreError> {
    // A read that raced a local write is stale: read again (the write is in the store now).
    for _ in 0..5 {
        let (generation, version) = (accounts.snapshot().generation(), directory.version());
        let all = store.load_accounts().await?;
        let iam = store.load_iam().await?;
        let fresh_accounts = accounts.snapshot().replace_all_if(generation, all);
        let fresh_iam = directory.replace_if(version, iam).await;
        if fresh_accounts && fresh_iam {
            return Ok(());
        }
    }
    Ok(())
}

/// Applies other instances' changes: the rows a notification names are read again and applied,
/// unless a local write was published meanwhile (the rows may predate it: read again); a
/// notification that names nothing in particular, or a failure, reads everything.
async fn follow(
    store: &dyn crate::store::Store,
    accounts: &Accounts,
    directory: &Directory,
    changed: crate::store::Changed,
) -> Result<(), crate::store::StoreError> {
    use crate::model::IamChange;
    if changed.all {
        return resync(store, accounts, directory).await;
    }
    if changed.is_empty() {
        return Ok(());
    }
    for _ in 0..5 {
        let (generation, version) = (accounts.snapshot().generation(), directory.version());
        let loaded = match store.load_changed(changed.clone()).await {
            Ok(loaded) => loaded,
            // What the notification named is not applied: read everything instead.
            Err(_) => break,
        };
        let account_changes = as_changes(
            &changed.accounts,
            loaded.accounts,
            |a| &a.client_id,
            |a| (a.client_id.clone(), Some(a)),
            |id| (id, None),
        );
        let mut iam = as_changes(
            &changed.bindings,
            loaded.bindings,
            |b| &b.binding_id,
            IamChange::PutBinding,
            IamChange::DeleteBinding,
        );
        iam.extend(as_changes(
            &changed.projects,
            loaded.projects,
            |p| &p.project_id,
            IamChange::PutProject,
            IamChange::DeleteProject,
        ));
        let fresh_accounts = account_changes.is_empty()
            || accounts
                .snapshot()
                .apply_all_if(generation, account_changes);
        let fresh_iam = iam.is_empty() || directory.publish_if(version, iam).await;
        if fresh_accounts && fresh_iam {
            return Ok(());
        }
    }
    resync(store, accounts, directory).await
}

/// What the rows read for the `named` ids mean: a row found is put, an id without one was
/// deleted.
fn as_changes<T, C>(
    named: &std::collections::BTreeSet<String>,
    rows: Vec<T>,
    id: impl Fn(&T) -> &String,
    put: impl Fn(T) -> C,
    delete: impl Fn(String) -> C,
) -> Vec<C> {
    let found: std::collections::HashSet<String> = rows.iter().map(|r| id(r).clone()).collect();
    let mut out: Vec<C> = rows.into_iter().map(put).collect();
    out.extend(
        named
            .iter()
            .filter(|n| !found.contains(*n))
            .map(|n| delete(n.clone())),
    );
    out
}

/// Follows other instances' changes on a shared store: a notification names the rows a batch
/// wrote, which are read and applied; a periodic resynchronisation covers lost ones. After a
/// broken feed (database restart) it reconnects, resynchronises, and goes on; requests keep
/// being served meanwhile.
pub fn spawn_change_follower(
    store: Arc<dyn crate::store::Store>,
    accounts: Accounts,
    directory: Directory,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            let mut feed = match store.changes().await {
                Ok(Some(rx)) => rx,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "change feed unavailable; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            };
            // Whatever happened while the feed was down is picked up here.
            if let Err(e) = resync(store.as_ref(), &accounts, &directory).await {
                tracing::warn!(error = %e, "resynchronisation failed");
            }
            loop {
                tokio::select! {
                    got = feed.next() => match got {
                        Some(changed) => {
                            if let Err(e) = follow(store.as_ref(), &accounts, &directory, changed).await {
                                tracing::warn!(error = %e, "applying another instance's change failed");
                            }
                        }
                        None => {
                            tracing::warn!("change feed ended; reconnecting");
                            break;
                        }
                    },
                    _ = tokio::time::sleep(RESYNC_EVERY) => {
                        if let Err(e) = resync(store.as_ref(), &accounts, &directory).await {
                            tracing::warn!(error = %e, "periodic resynchronisation failed");
                        }
                    }
                    _ = shutdown.changed() => return,
                }
            }
        }
    });
}
