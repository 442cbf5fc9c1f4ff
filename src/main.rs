//! The `iamgate` command line: a thin shell over the library.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use iamgate::config::{ProcessEnv, Settings};
use iamgate::iam::{AuthMethod, NewAccount, Owner, SecretHasher};
use iamgate::store::Store;
use iamgate::token::SigningKey;
use iamgate::util::unix_now;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "iamgate",
    version,
    about = "Authorization gateway for Console-style platforms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (YAML); also IAMGATE_CONFIG. Defaults work without one.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Administration without a running server.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Key tools.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Import role bindings kept elsewhere, straight into the store (audited, one transaction).
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Print a fresh signed client assertion for private_key_jwt.
    Assertion {
        /// The service account's client id (iss and sub).
        #[arg(long)]
        client_id: String,
        /// The private key PEM file.
        #[arg(long)]
        key: PathBuf,
        /// The key id registered for the account. A thumbprint may start with `-`: taken as the
        /// value, not as an option.
        #[arg(long, allow_hyphen_values = true)]
        kid: String,
        /// Audience.
        #[arg(long, default_value = "console-client-credentials")]
        aud: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 300)]
        lifetime: i64,
        /// How many assertions to print, one per line, each with its own jti (load tests).
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a root service account directly in the store; prints the creation JSON.
    CreateRootSa {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Account name.
        #[arg(long)]
        name: String,
        /// Root permission (repeatable).
        #[arg(long = "permission", required = true)]
        permissions: Vec<String>,
        /// client_secret_basic (default) or private_key_jwt.
        #[arg(long, default_value = "client_secret_basic")]
        auth_method: String,
        /// Public key file (PEM or JWK JSON) for private_key_jwt.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check what `serve` would load (the configuration with its files and secrets, the route
    /// table, the policy with its tests, the TLS certificate) without serving; prints every
    /// problem and exits 1 if there is one. For operators' CI and init containers.
    Check {
        /// Config file (YAML); also IAMGATE_CONFIG.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run every `test_*` rule in the policy folder; prints failures and `N passed, N failed`.
    Test {
        /// The policy folder.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// The route table the policy will serve (YAML); every permission it names must exist
        /// in the policy's data. Defaults to the built-in table.
        #[arg(long)]
        routes: Option<PathBuf>,
        /// Also report which lines of the policy the tests evaluate, per file, and every line
        /// they do not reach (`file:line`); `# coverage-exempt: <reason>` exempts a line.
        #[arg(long)]
        coverage: bool,
        /// Fail when the tests cover less than this share of the policy's lines (percent;
        /// implies --coverage).
        #[arg(long, value_name = "PERCENT")]
        min_coverage: Option<f64>,
    },
    /// Evaluate the decision for an input document (JSON, see policies/README.md).
    Eval {
        /// Input JSON file, or `-` for standard input.
        #[arg(long)]
        input: PathBuf,
        /// The policy folder.
        #[arg(long, default_value = "policies")]
        dir: PathBuf,
        /// Also print which bindings, roles and permissions granted or failed the check.
        #[arg(long)]
        explain: bool,
    },
    /// Delete every rule-body line of the policy in turn and check that the gate (tests,
    /// evaluator agreement) refuses each; lines listed in mutants-equivalent.txt with a reason
    /// are accepted. Exit 1 when a deletion survives.
    Mutants {
        /// The policy folder.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Parallel checks.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Decide the decisions recorded in a decision log (kept with `log.decision_inputs`) again
    /// with a candidate policy and report every one that changes, grouped by route and change.
    /// Exit 0 when nothing changes, 1 when something does.
    Replay {
        /// The log: JSON lines as `iamgate serve` writes them (other lines are ignored), or `-`
        /// for standard input.
        #[arg(long)]
        log: PathBuf,
        /// The candidate policy folder (it must pass the gate a running gateway applies).
        #[arg(long, default_value = "policies")]
        dir: PathBuf,
        /// Which changes fail: `any` (default), `outcome` (an allow or deny flips) or `grant`
        /// (a deny becomes an allow).
        #[arg(long, default_value = "any", value_parser = ["any", "outcome", "grant"])]
        fail_on: String,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// The Console's Rönd collections as exported (a JSON array, or one document per line):
    /// every document is checked first and one bad document aborts with its position and field,
    /// writing nothing; then every binding is written in one transaction with an audit record.
    /// Running the same import again changes nothing.
    Rond(RondArgs),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate an RSA-2048 key pair for a private_key_jwt client: writes the private key PEM
    /// and prints the public JWK (with kid) and PEM.
    Generate {
        /// Where to write the private key (mode 0600).
        #[arg(long, default_value = "client-private-key.pem")]
        out: PathBuf,
    },
    /// Rotate the managed access-token signing keys (next becomes active, active retires).
    Rotate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Revoke one managed signing key now (a leaked key): it leaves the JWKS, its private key
    /// is deleted, and every instance refuses the tokens it signed within `signing.reload_secs`.
    /// Revoking the active key promotes the next one first. Audited with actor `cli`.
    Revoke {
        /// The key's `kid` (as in the JWKS and in the tokens' header); it may start with `-`.
        #[arg(allow_hyphen_values = true)]
        kid: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Config {
            command: ConfigCommand::Check { config },
        } => config_check(config),
        Command::Policy {
            command:
                PolicyCommand::Test {
                    dir,
                    routes,
                    coverage,
                    min_coverage,
                },
        } => policy_test(dir, routes, coverage, min_coverage),
        Command::Policy {
            command: PolicyCommand::Mutants { dir, threads },
        } => policy_mutants(dir, threads),
        Command::Policy {
            command: PolicyCommand::Replay { log, dir, fail_on },
        } => policy_replay(log, dir, &fail_on),
        Command::Import {
            command: ImportCommand::Rond(args),
        } => import_rond(args),
        Command::Policy {
            command:
                PolicyCommand::Eval {
                    input,
                    dir,
                    explain,
                },
        } => policy_eval(input, dir, explain),
        Command::Admin {
            command:
                AdminCommand::CreateRootSa {
                    config,
                    name,
                    permissions,
                    auth_method,
                    public_key,
                },
        } => create_root_sa(config, name, permissions, auth_method, public_key),
        Command::Keys {
            command: KeysCommand::Generate { out },
        } => keys_generate(out),
        Command::Keys {
            command: KeysCommand::Rotate { config },
        } => keys_rotate(config),
        Command::Keys {
            command: KeysCommand::Revoke { kid, config },
        } => keys_revoke(config, &kid),
        Command::Assertion {
            client_id,
            key,
            kid,
            aud,
            lifetime,
            count,
        } => assertion(client_id, key, kid, aud, lifetime, count),
    }
}

fn load_settings(config: Option<PathBuf>) -> Result<Settings> {
    Ok(Settings::load(config.as_deref(), &ProcessEnv)?)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn serve(config: Option<PathBuf>) -> Result<()> {
    let settings = load_settings(config)?;
    iamgate::telemetry::init(&settings.log_level, settings.log_json);
    let grace = settings.server.shutdown_grace;
    runtime()?.block_on(async move {
        let running = iamgate::server::start(settings).await?;
        wait_for_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        running.shutdown(grace).await;
        Ok(())
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn create_root_sa(
    config: Option<PathBuf>,
    name: String,
    permissions: Vec<String>,
    auth_method: String,
    public_key: Option<PathBuf>,
) -> Result<()> {
    let settings = load_settings(config)?;
    let method = AuthMethod::parse(&auth_method).with_context(|| {
        format!("--auth-method `{auth_method}` is not client_secret_basic or private_key_jwt")
    })?;
    let public_key = match public_key {
        Some(p) => Some(serde_json::Value::String(
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
        )),
        None => None,
    };
    if method == AuthMethod::PrivateKeyJwt && public_key.is_none() {
        bail!("--public-key is required with private_key_jwt");
    }
    runtime()?.block_on(async move {
        let store: Arc<dyn Store> = iamgate::store::open(&settings.database).await?;
        let pepper =
            iamgate::iam::load_pepper(settings.secret_pepper.as_ref(), &settings.data_dir)?;
        // The root permissions are the policy's (its data); the write is the management API's
        // own, audited with actor `cli`.
        let (source, _) = iamgate::policy::configured_source(settings.policy.dir.as_deref())?;
        let model = iamgate::policy::data::PolicyData::of_source(&source)?.model;
        let accounts =
            iamgate::iam::Accounts::load(store.clone(), Arc::new(SecretHasher::new(&pepper)))
                .await?;
        let directory = iamgate::iam::directory::Directory::load(store).await?;
        let manager = iamgate::iam::manage::Manager::new(accounts, directory, 0);
        let created = manager
            .create_account(
                "cli",
                NewAccount {
                    name,
                    owner: Owner::Root,
                    method,
                    public_key,
                    permissions,
                },
                &iamgate::iam::manage::RoleRequest::default(),
                &model,
                unix_now(),
                None,
            )
            .await?;
        println!("{}", serde_json::to_string_pretty(&created)?);
        Ok(())
    })
}

/// `iamgate import rond`'s arguments.
#[derive(clap::Args)]
struct RondArgs {
    /// The roles collection (`roleId`, `name`, `permissions`).
    #[arg(long)]
    roles: PathBuf,
    /// The bindings collection (`bindingId`, `subjects`, `groups`, `roles`, `permissions`,
    /// `resource`).
    #[arg(long)]
    bindings: PathBuf,
    /// Rename a Rönd role to one of the policy's roles (repeatable).
    #[arg(long = "role-map", value_name = "OLD=NEW")]
    role_map: Vec<String>,
    /// The configured external issuer whose users and groups the bindings name (default: the
    /// only one configured).
    #[arg(long)]
    issuer: Option<String>,
    /// Print what would be added, changed and left alone; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Config file (YAML); also IAMGATE_CONFIG.
    #[arg(long)]
    config: Option<PathBuf>,
}

fn import_rond(args: RondArgs) -> Result<()> {
    use iamgate::iam::import::{Context, documents, read_bindings, read_roles};
    let settings = load_settings(args.config)?;
    let configured: Vec<String> = settings
        .external_issuers
        .iter()
        .map(|e| e.name.clone())
        .collect();
    let issuer = match (args.issuer, configured.as_slice()) {
        (Some(i), _) if configured.contains(&i) => Some(i),
        (Some(i), _) => bail!(
            "--issuer `{i}` is not a configured external issuer (configured: {})",
            configured.join(", ")
        ),
        (None, [only]) => Some(only.clone()),
        (None, _) => None,
    };
    let mut role_map = std::collections::HashMap::new();
    for m in &args.role_map {
        match m.split_once('=') {
            Some((old, new)) if !old.is_empty() && !new.is_empty() => {
                if role_map.insert(old.to_owned(), new.to_owned()).is_some() {
                    bail!("--role-map: `{old}` is mapped twice");
                }
            }
            _ => bail!("--role-map `{m}`: expected OLD=NEW"),
        }
    }
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let (roles_name, bindings_name) = (
        args.roles.display().to_string(),
        args.bindings.display().to_string(),
    );
    let role_docs = documents(&roles_name, &read(&args.roles)?)?;
    let binding_docs = documents(&bindings_name, &read(&args.bindings)?)?;
    let rond_roles = read_roles(&roles_name, &role_docs)?;
    let dry_run = args.dry_run;
    runtime()?.block_on(async move {
        let store: Arc<dyn Store> = iamgate::store::open(&settings.database).await?;
        let pepper =
            iamgate::iam::load_pepper(settings.secret_pepper.as_ref(), &settings.data_dir)?;
        let (source, _) = iamgate::policy::configured_source(settings.policy.dir.as_deref())?;
        let data = iamgate::policy::data::PolicyData::of_source(&source)?;
        let accounts =
            iamgate::iam::Accounts::load(store.clone(), Arc::new(SecretHasher::new(&pepper)))
                .await?;
        let directory = iamgate::iam::directory::Directory::load(store).await?;
        let company_of_project = |p: &str| {
            directory
                .project(p)
                .map(|project| project.company_id.clone())
        };
        let cx = Context {
            model: &data.model,
            permissions: data.permissions.as_ref(),
            role_map: &role_map,
            issuer: issuer.as_deref(),
            accounts: accounts.snapshot(),
            company_of_project: &company_of_project,
        };
        let (bindings, skipped) = read_bindings(&bindings_name, &binding_docs, &rond_roles, &cx)?;
        let manager = iamgate::iam::manage::Manager::new(accounts.clone(), directory.clone(), 0);
        let summary = manager
            .import_bindings("cli", bindings, dry_run, unix_now())
            .await?;
        let out = serde_json::json!({
            "dryRun": dry_run,
            "added": summary.added,
            "changed": summary.changed,
            "unchanged": summary.unchanged,
            "skipped": skipped,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        Ok(())
    })
}

fn policy_test(
    dir: PathBuf,
    routes: Option<PathBuf>,
    coverage: bool,
    min_coverage: Option<f64>,
) -> Result<()> {
    let source = iamgate::policy::PolicySource::read(&dir)?;
    let measured = if coverage || min_coverage.is_some() {
        let c = iamgate::policy::coverage::measure(&source)?;
        print!("{}", c.render(&source));
        Some(c)
    } else {
        None
    };
    let mut problems = check_policy(source, routes.as_deref(), true);
    if let (Some(c), Some(min)) = (&measured, min_coverage)
        && c.percent() < min
    {
        problems.push(format!(
            "coverage {:.1}% is below the required {min}%",
            c.percent()
        ));
    }
    if !problems.is_empty() {
        for p in &problems {
            println!("REFUSED: {p}");
        }
        std::process::exit(1);
    }
    Ok(())
}

/// The gate a running gateway applies to `source` (tests exist and pass, the policy data is
/// consistent, the production evaluator agrees) and the route table (`routes`, or the built-in
/// one) against it: every permission it names exists. Returns the problems; with `report`,
/// prints each failed test and the summary.
fn check_policy(
    source: iamgate::policy::PolicySource,
    routes: Option<&std::path::Path>,
    report: bool,
) -> Vec<String> {
    use iamgate::proxy::table::Routes;
    let (file, table) = match routes {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path)
                .map_err(|e| vec![format!("cannot read it: {e}")])
                .and_then(|text| Routes::from_yaml(&text)),
        ),
        None => ("built-in".to_owned(), Routes::default_table()),
    };
    let table = match table {
        Ok(t) => t,
        Err(errors) => {
            return errors
                .into_iter()
                .map(|e| format!("route table {file}: {e}"))
                .collect();
        }
    };
    iamgate::policy::engine::set_decision_timeout(Duration::from_secs(5));
    let (tests, gated) = iamgate::policy::Snapshot::gate(source);
    if let (true, Some(tests)) = (report, &tests) {
        for f in &tests.failed {
            println!("FAIL {}: {}", f.name, f.reason);
        }
        println!("{}", tests.summary());
    }
    match gated.and_then(|s| s.check_named(&table.named_permissions())) {
        Ok(_) => Vec::new(),
        Err(e) => vec![e.to_string()],
    }
}

fn config_check(config: Option<PathBuf>) -> Result<()> {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(e) => {
            println!("{e}");
            std::process::exit(1);
        }
    };
    let mut problems = Vec::new();
    match iamgate::policy::configured_source(settings.policy.dir.as_deref()) {
        Ok((source, _)) => {
            problems.extend(check_policy(source, settings.routes_file.as_deref(), false));
        }
        Err(e) => problems.push(format!("policy: {e}")),
    }
    if let Some(tls) = &settings.server.tls
        && let Err(e) = iamgate::server::check_tls(&tls.cert_file, &tls.key_file)
    {
        problems.push(format!("server.tls: {e}"));
    }
    if problems.is_empty() {
        println!("configuration, route table and policy are valid");
        return Ok(());
    }
    for p in &problems {
        println!("- {p}");
    }
    std::process::exit(1);
}

fn policy_mutants(dir: PathBuf, threads: usize) -> Result<()> {
    use iamgate::policy::mutation;
    let source = iamgate::policy::PolicySource::read(&dir)?;
    let listed = match std::fs::read_to_string(dir.join(mutation::EQUIVALENT_FILE)) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("reading the list of equivalent mutants"),
    };
    iamgate::policy::engine::set_decision_timeout(Duration::from_secs(5));
    let started = std::time::Instant::now();
    let report =
        mutation::check(&source, listed.as_deref(), threads).map_err(|e| anyhow::anyhow!(e))?;
    for m in &report.survived {
        println!("SURVIVED {}:{}: {}", m.file, m.line, m.text);
    }
    for u in &report.unused {
        println!("UNUSED entry of {}: {u}", mutation::EQUIVALENT_FILE);
    }
    println!(
        "{} deletions: {} caught, {} equivalent (listed), {} survived ({:.1} s)",
        report.caught.len() + report.equivalent.len() + report.survived.len(),
        report.caught.len(),
        report.equivalent.len(),
        report.survived.len(),
        started.elapsed().as_secs_f64()
    );
    if !report.ok() {
        std::process::exit(1);
    }
    Ok(())
}

fn policy_eval(input: PathBuf, dir: PathBuf, explain: bool) -> Result<()> {
    let text = if input.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&input).with_context(|| format!("reading {}", input.display()))?
    };
    let doc: iamgate::policy::DecisionInput =
        serde_json::from_str(&text).context("input is not a valid policy input document")?;
    let source = iamgate::policy::PolicySource::read(&dir)?;
    iamgate::policy::engine::set_decision_timeout(Duration::from_secs(5));
    let snapshot = iamgate::policy::Snapshot::compile(source)?;
    let d = snapshot.decide(&doc);
    let mut out =
        serde_json::json!({"allow": d.allow, "reason": &*d.reason, "revision": &*d.revision});
    if explain {
        out["explain"] = snapshot.explain(&doc)?;
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn policy_replay(log: PathBuf, dir: PathBuf, fail_on: &str) -> Result<()> {
    use iamgate::policy::replay::{ChangeKind, replay};
    iamgate::policy::engine::set_decision_timeout(Duration::from_secs(5));
    let source = iamgate::policy::PolicySource::read(&dir)?;
    let candidate = iamgate::policy::Snapshot::compile_tested(source)
        .with_context(|| format!("the candidate policy {} is refused", dir.display()))?;
    let report = if log.as_os_str() == "-" {
        replay(std::io::stdin().lock(), &candidate)?
    } else {
        let file =
            std::fs::File::open(&log).with_context(|| format!("reading {}", log.display()))?;
        replay(std::io::BufReader::new(file), &candidate)?
    };
    print!("{}", report.render());
    let failing = match fail_on {
        "grant" => report.count(ChangeKind::Grant),
        "outcome" => report.count(ChangeKind::Grant) + report.count(ChangeKind::Revoke),
        _ => report.changed(),
    };
    if failing > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn keys_generate(out: PathBuf) -> Result<()> {
    let key = SigningKey::generate(None)?;
    iamgate::util::write_private_file(&out, key.to_pkcs8_pem()?.as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    let doc = serde_json::json!({
        "privateKeyFile": out.display().to_string(),
        "kid": key.kid(),
        "publicKeyJwk": key.public_jwk(),
        "publicKeyPem": key.public_pem()?,
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

/// The managed signing key set of `settings`, with its store; `None` when the config names PEM
/// files instead.
async fn managed_keys(
    settings: &Settings,
) -> Result<Option<(Arc<dyn Store>, iamgate::token::keyset::ManagedKeys)>> {
    if !settings.signing.keys.is_empty() {
        return Ok(None);
    }
    let store: Arc<dyn Store> = iamgate::store::open(&settings.database).await?;
    let pepper = iamgate::iam::load_pepper(settings.secret_pepper.as_ref(), &settings.data_dir)?;
    let managed = iamgate::server::managed_keys(settings, &store, &pepper).await?;
    Ok(managed.map(|m| (store, m)))
}

fn keys_rotate(config: Option<PathBuf>) -> Result<()> {
    let settings = load_settings(config)?;
    runtime()?.block_on(async {
        let Some((_, managed)) = managed_keys(&settings).await? else {
            bail!("signing keys come from configured PEM files; rotate them by editing the config");
        };
        let keys = managed.rotate(unix_now()).await?;
        // Running servers pick the new set up within `signing.reload_secs`.
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "keys": keys }))?
        );
        Ok(())
    })
}

fn keys_revoke(config: Option<PathBuf>, kid: &str) -> Result<()> {
    let settings = load_settings(config)?;
    runtime()?.block_on(async {
        let Some((store, managed)) = managed_keys(&settings).await? else {
            let configured = settings
                .signing
                .keys
                .iter()
                .any(|k| k.kid.as_deref() == Some(kid));
            bail!(
                "signing keys come from configured PEM files{}: to revoke it, remove its entry \
                 from signing.keys (if it was the active key, mark another one active), roll the \
                 config out and restart every instance; the tokens it signed are refused from \
                 then on",
                if configured {
                    ""
                } else {
                    " (and none has this kid)"
                }
            );
        };
        let now = unix_now();
        let done = managed.revoke(kid, now).await?;
        eprintln!(
            "revoked {kid}; every instance refuses its tokens within {} s (signing.reload_secs)",
            settings.signing.reload.as_secs()
        );
        // The key is gone whatever happens next; a failed audit write is reported as such.
        store
            .commit(vec![iamgate::store::Write::Audit(
                iamgate::store::AuditRecord {
                    at: now,
                    actor: "cli".to_owned(),
                    action: "signing-key.revoke".to_owned(),
                    target: kid.to_owned(),
                    before: Some(serde_json::to_value(&done.revoked)?),
                    after: Some(serde_json::to_value(&done.keys)?),
                },
            )])
            .await
            .context("the key is revoked, but its audit record could not be written")?;
        println!("{}", serde_json::to_string_pretty(&done)?);
        Ok(())
    })
}

fn assertion(
    client_id: String,
    key: PathBuf,
    kid: String,
    aud: String,
    lifetime: i64,
    count: u32,
) -> Result<()> {
    let pem =
        std::fs::read_to_string(&key).with_context(|| format!("reading {}", key.display()))?;
    let signer = SigningKey::from_pem(&pem, Some(kid.clone()))?;
    let header = iamgate::util::b64url(serde_json::to_vec(
        &serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
    )?);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..count {
        let now = unix_now();
        let claims = serde_json::json!({
            "iss": client_id, "sub": client_id, "aud": aud,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now, "exp": now + lifetime,
        });
        let token = signer.sign_with_header(&header, &serde_json::to_vec(&claims)?)?;
        std::io::Write::write_all(&mut out, format!("{token}\n").as_bytes())?;
    }
    std::io::Write::flush(&mut out)?;
    Ok(())
}
