//! `concord acl bootstrap|token|policy|role`: Consul's `consul acl` commands over
//! `/v1/acl/*`. Every command takes the HTTP flags (`-token`, `CONSUL_HTTP_TOKEN`) and
//! prints records the way `consul acl` does (`-format=json` prints the API's JSON).

use std::io::Read as _;

use concord_api::acl::{
    AclLink, AclNodeIdentity, AclPolicy, AclRole, AclServiceIdentity, AclToken,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::flags::{flag, parse_or_usage, Flag, Kind, Parsed};
use crate::http::{escape_path, HttpClient};
use crate::output::{fail, out, outln};

const USAGE: &str = "Usage: concord acl <subcommand> [options] [args]

  Manages ACLs: the bootstrap token, tokens, policies and roles.

Subcommands:
    bootstrap    Create the initial management token
    policy       Manage policies (create, read, list, update, delete)
    role         Manage roles (create, read, list, delete)
    token        Manage tokens (create, read, list, update, clone, delete)";

const TOKEN_USAGE: &str =
    "Usage: concord acl token <create|read|list|update|clone|delete> [options]

  -id=<accessor>           The token's AccessorID (read, update, clone, delete).
  -self                    Read the token the request carries (read).
  -description=<text>      Description (create, update, clone).
  -policy-id=<id>          Link a policy by ID (repeatable).
  -policy-name=<name>      Link a policy by name (repeatable).
  -role-id=<id>            Link a role by ID (repeatable).
  -role-name=<name>        Link a role by name (repeatable).
  -service-identity=<svc[:dc1,dc2]>  Add a service identity (repeatable).
  -node-identity=<node:dc> Add a node identity (repeatable).
  -local                   Local to this datacenter (create).
  -expires-ttl=<duration>  Expire after this long (create).
  -secret=<uuid>           Use this SecretID (create).
  -accessor=<uuid>         Use this AccessorID (create).
  -format=<pretty|json>    Output format.";

const POLICY_USAGE: &str = "Usage: concord acl policy <create|read|list|update|delete> [options]

  -id=<id>                 The policy's ID (read, update, delete).
  -name=<name>             The policy's name (create; read, update, delete by name).
  -description=<text>      Description.
  -rules=<rules>           Rules in HCL or JSON; `@file` reads a file, `-` stdin.
  -valid-datacenter=<dc>   Restrict to a datacenter (repeatable).
  -format=<pretty|json>    Output format.";

const ROLE_USAGE: &str = "Usage: concord acl role <create|read|list|update|delete> [options]

  -id=<id>                 The role's ID (read, update, delete).
  -name=<name>             The role's name (create; read, delete by name).
  -description=<text>      Description.
  -policy-id=<id>          Link a policy by ID (repeatable).
  -policy-name=<name>      Link a policy by name (repeatable).
  -service-identity=<svc[:dc1,dc2]>  Add a service identity (repeatable).
  -node-identity=<node:dc> Add a node identity (repeatable).
  -format=<pretty|json>    Output format.";

const FLAGS: &[Flag] = &[
    flag("id", Kind::Str),
    flag("self", Kind::Bool),
    flag("name", Kind::Str),
    flag("description", Kind::Str),
    flag("policy-id", Kind::List),
    flag("policy-name", Kind::List),
    flag("role-id", Kind::List),
    flag("role-name", Kind::List),
    flag("service-identity", Kind::List),
    flag("node-identity", Kind::List),
    flag("local", Kind::Bool),
    flag("expires-ttl", Kind::Str),
    flag("secret", Kind::Str),
    flag("accessor", Kind::Str),
    flag("rules", Kind::Str),
    flag("valid-datacenter", Kind::List),
    flag("format", Kind::Str),
];

/// Runs `concord acl <subcommand> ...`; returns the exit code.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let Some((sub, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(1);
    };
    let (group, usage) = match sub.as_str() {
        "bootstrap" => return bootstrap(rest).await,
        "token" => ("token", TOKEN_USAGE),
        "policy" => ("policy", POLICY_USAGE),
        "role" => ("role", ROLE_USAGE),
        "-h" | "-help" | "--help" => {
            eprintln!("{USAGE}");
            return Ok(0);
        }
        other => return fail(format!("Unknown subcommand: acl {other}\n\n{USAGE}")),
    };
    let Some((verb, rest)) = rest.split_first() else {
        eprintln!("{usage}");
        return Ok(1);
    };
    let p = match parse_or_usage(rest, FLAGS, usage) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let c = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    let cmd = Cmd { p, c };
    match (group, verb.as_str()) {
        ("token", "create") => cmd.token_create().await,
        ("token", "read") => cmd.token_read().await,
        ("token", "list") => cmd.list::<AclToken>("/v1/acl/tokens", print_token).await,
        ("token", "update") => cmd.token_update().await,
        ("token", "clone") => cmd.token_clone().await,
        ("token", "delete") => cmd.delete("token", "/v1/acl/token").await,
        ("policy", "create") => cmd.record_write::<AclPolicy>(None).await,
        ("policy", "read") => cmd.record_read::<AclPolicy>().await,
        ("policy", "list") => {
            cmd.list::<AclPolicy>("/v1/acl/policies", print_policy)
                .await
        }
        ("policy", "update") => cmd.record_update::<AclPolicy>().await,
        ("policy", "delete") => cmd.record_delete::<AclPolicy>().await,
        ("role", "create") => cmd.record_write::<AclRole>(None).await,
        ("role", "read") => cmd.record_read::<AclRole>().await,
        ("role", "list") => cmd.list::<AclRole>("/v1/acl/roles", print_role).await,
        ("role", "update") => cmd.record_update::<AclRole>().await,
        ("role", "delete") => cmd.record_delete::<AclRole>().await,
        _ => fail(format!("Unknown subcommand: acl {group} {verb}\n\n{usage}")),
    }
}

async fn bootstrap(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(args, FLAGS, USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let c = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    let cmd = Cmd { p, c };
    match cmd.c.put("/v1/acl/bootstrap", &[], Vec::new()).await {
        Ok(body) => cmd.show(&body, print_token),
        Err(e) => fail(format!("Failed ACL bootstrapping: {e}")),
    }
}

/// Parsed flags plus the client: what every subcommand works from.
struct Cmd {
    p: Parsed,
    c: HttpClient,
}

/// Links from `-<kind>-id` and `-<kind>-name` flags.
fn links(p: &Parsed, kind: &str) -> Vec<AclLink> {
    let ids = p.list(&format!("{kind}-id")).iter().map(|id| AclLink {
        id: id.clone(),
        name: String::new(),
    });
    let names = p.list(&format!("{kind}-name")).iter().map(|name| AclLink {
        id: String::new(),
        name: name.clone(),
    });
    ids.chain(names).collect()
}

/// `-service-identity=web` or `web:dc1,dc2`.
fn service_identities(p: &Parsed) -> Vec<AclServiceIdentity> {
    p.list("service-identity")
        .iter()
        .map(|s| match s.split_once(':') {
            Some((name, dcs)) => AclServiceIdentity {
                service_name: name.to_string(),
                datacenters: dcs.split(',').map(str::to_string).collect(),
            },
            None => AclServiceIdentity {
                service_name: s.clone(),
                datacenters: Vec::new(),
            },
        })
        .collect()
}

/// `-node-identity=node:dc`.
fn node_identities(p: &Parsed) -> anyhow::Result<Vec<AclNodeIdentity>> {
    p.list("node-identity")
        .iter()
        .map(|s| {
            let (node, dc) = s.split_once(':').ok_or_else(|| {
                anyhow::anyhow!("Malformed -node-identity argument: {s:?} (want node:datacenter)")
            })?;
            Ok(AclNodeIdentity {
                node_name: node.to_string(),
                datacenter: dc.to_string(),
            })
        })
        .collect()
}

/// `-rules`: inline, `@file`, or `-` for stdin.
fn rules_arg(raw: &str) -> anyhow::Result<String> {
    if raw == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        return Ok(s);
    }
    if let Some(path) = raw.strip_prefix('@') {
        return std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("Failed to read rules from {path:?}: {e}"));
    }
    Ok(raw.to_string())
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(body).map_err(|e| anyhow::anyhow!("Error decoding response: {e}"))
}

impl Cmd {
    fn json(&self) -> bool {
        self.p.value("format") == Some("json")
    }

    /// Prints one record from a response body.
    fn show<T: DeserializeOwned + Serialize>(
        &self,
        body: &[u8],
        print: fn(&T) -> String,
    ) -> anyhow::Result<i32> {
        let record: T = decode(body)?;
        if self.json() {
            outln(&serde_json::to_string_pretty(&record)?)?;
        } else {
            out(print(&record))?;
        }
        Ok(0)
    }

    fn id(&self, what: &str) -> Result<String, i32> {
        match self.p.value("id").filter(|i| !i.is_empty()) {
            Some(id) => Ok(id.to_string()),
            None => {
                eprintln!("Must specify the -id parameter for the {what}");
                Err(1)
            }
        }
    }

    async fn get(&self, path: &str, what: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self.c.get_json::<serde_json::Value>(path, &[]).await {
            Ok(Some(v)) => Ok(Some(serde_json::to_vec(&v)?)),
            Ok(None) => {
                eprintln!("Error reading {what}: not found");
                Ok(None)
            }
            Err(e) => {
                eprintln!("Error reading {what}: {e}");
                Ok(None)
            }
        }
    }

    async fn list<T: DeserializeOwned + Serialize>(
        &self,
        path: &str,
        print: fn(&T) -> String,
    ) -> anyhow::Result<i32> {
        let items: Vec<T> = match self.c.get_json(path, &[]).await {
            Ok(items) => items.unwrap_or_default(),
            Err(e) => return fail(format!("Failed to retrieve the list: {e}")),
        };
        if self.json() {
            outln(&serde_json::to_string_pretty(&items)?)?;
        } else {
            let text: Vec<String> = items.iter().map(print).collect();
            out(text.join("\n"))?;
        }
        Ok(0)
    }

    async fn delete(&self, what: &str, base: &str) -> anyhow::Result<i32> {
        let id = match self.id(what) {
            Ok(id) => id,
            Err(code) => return Ok(code),
        };
        self.delete_id(what, base, &id).await
    }

    async fn delete_id(&self, what: &str, base: &str, id: &str) -> anyhow::Result<i32> {
        let path = format!("{base}/{}", escape_path(id));
        match self.c.delete(&path, &[]).await {
            Ok(_) => {
                outln(&format!("{} {id:?} deleted successfully", capitalize(what)))?;
                Ok(0)
            }
            Err(e) => fail(format!("Error deleting {what} {id:?}: {e}")),
        }
    }

    async fn token_create(&self) -> anyhow::Result<i32> {
        let token = AclToken {
            accessor_id: self.p.value_or("accessor", "").to_string(),
            secret_id: self.p.value_or("secret", "").to_string(),
            description: self.p.value_or("description", "").to_string(),
            policies: links(&self.p, "policy"),
            roles: links(&self.p, "role"),
            service_identities: service_identities(&self.p),
            node_identities: node_identities(&self.p)?,
            local: self.p.bool("local"),
            expiration_ttl: self.p.value_or("expires-ttl", "").to_string(),
            ..AclToken::default()
        };
        match self
            .c
            .put("/v1/acl/token", &[], serde_json::to_vec(&token)?)
            .await
        {
            Ok(body) => self.show(&body, print_token),
            Err(e) => fail(format!("Failed to create new token: {e}")),
        }
    }

    async fn token_read(&self) -> anyhow::Result<i32> {
        let path = if self.p.bool("self") {
            "/v1/acl/token/self".to_string()
        } else {
            match self.id("token") {
                Ok(id) => format!("/v1/acl/token/{}", escape_path(&id)),
                Err(code) => return Ok(code),
            }
        };
        match self.get(&path, "token").await? {
            Some(body) => self.show(&body, print_token),
            None => Ok(1),
        }
    }

    async fn token_update(&self) -> anyhow::Result<i32> {
        let id = match self.id("token") {
            Ok(id) => id,
            Err(code) => return Ok(code),
        };
        let path = format!("/v1/acl/token/{}", escape_path(&id));
        let Some(body) = self.get(&path, "token").await? else {
            return Ok(1);
        };
        let mut token: AclToken = decode(&body)?;
        if let Some(d) = self.p.value("description") {
            token.description = d.to_string();
        }
        let policies = links(&self.p, "policy");
        if !policies.is_empty() {
            token.policies = policies;
        }
        let roles = links(&self.p, "role");
        if !roles.is_empty() {
            token.roles = roles;
        }
        let services = service_identities(&self.p);
        if !services.is_empty() {
            token.service_identities = services;
        }
        let nodes = node_identities(&self.p)?;
        if !nodes.is_empty() {
            token.node_identities = nodes;
        }
        token.secret_id = String::new();
        match self.c.put(&path, &[], serde_json::to_vec(&token)?).await {
            Ok(body) => {
                outln("Token updated successfully.")?;
                self.show(&body, print_token)
            }
            Err(e) => fail(format!("Failed to update token {id}: {e}")),
        }
    }

    async fn token_clone(&self) -> anyhow::Result<i32> {
        let id = match self.id("token") {
            Ok(id) => id,
            Err(code) => return Ok(code),
        };
        let path = format!("/v1/acl/token/{}/clone", escape_path(&id));
        let body = serde_json::json!({"Description": self.p.value_or("description", "")});
        match self.c.put(&path, &[], serde_json::to_vec(&body)?).await {
            Ok(body) => {
                outln("Token cloned successfully.")?;
                self.show(&body, print_token)
            }
            Err(e) => fail(format!("Failed to clone token: {e}")),
        }
    }

    /// Reads a policy or role by `-id` or `-name`.
    async fn by_id_or_name(&self, what: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let path = match (self.p.value("id"), self.p.value("name")) {
            (Some(id), _) if !id.is_empty() => format!("/v1/acl/{what}/{}", escape_path(id)),
            (_, Some(name)) if !name.is_empty() => {
                format!("/v1/acl/{what}/name/{}", escape_path(name))
            }
            _ => {
                eprintln!("Must specify either the -id or -name parameters");
                return Ok(None);
            }
        };
        self.get(&path, what).await
    }

    /// `acl <noun> create` (no `existing`) or `update`: the flags applied over the record.
    async fn record_write<R: CliRecord>(&self, existing: Option<R>) -> anyhow::Result<i32> {
        let creating = existing.is_none();
        let mut record = existing.unwrap_or_default();
        if creating {
            *record.name_mut() = self.p.value_or("name", "").to_string();
            if record.name_mut().is_empty() {
                return fail("Missing required '-name' flag");
            }
        }
        if let Some(d) = self.p.value("description") {
            *record.description_mut() = d.to_string();
        }
        record.apply(&self.p)?;
        let (path, verb) = if creating {
            (format!("/v1/acl/{}", R::NOUN), "create")
        } else {
            let id = escape_path(record.id());
            (format!("/v1/acl/{}/{id}", R::NOUN), "update")
        };
        match self.c.put(&path, &[], serde_json::to_vec(&record)?).await {
            Ok(body) => self.show(&body, R::print),
            Err(e) => fail(format!("Failed to {verb} {}: {e}", R::NOUN)),
        }
    }

    async fn record_read<R: CliRecord>(&self) -> anyhow::Result<i32> {
        match self.by_id_or_name(R::NOUN).await? {
            Some(body) => self.show(&body, R::print),
            None => Ok(1),
        }
    }

    async fn record_update<R: CliRecord>(&self) -> anyhow::Result<i32> {
        let Some(body) = self.by_id_or_name(R::NOUN).await? else {
            return Ok(1);
        };
        self.record_write(Some(decode::<R>(&body)?)).await
    }

    async fn record_delete<R: CliRecord>(&self) -> anyhow::Result<i32> {
        let Some(body) = self.by_id_or_name(R::NOUN).await? else {
            return Ok(1);
        };
        let record: R = decode(&body)?;
        let base = format!("/v1/acl/{}", R::NOUN);
        self.delete_id(R::NOUN, &base, record.id()).await
    }
}

/// What `acl policy` and `acl role` differ in: the record, its noun, its own flags and how
/// it prints. One set of subcommands (`record_*`) serves both.
trait CliRecord: DeserializeOwned + Serialize + Default {
    /// The path segment and the word in messages (`policy`, `role`).
    const NOUN: &'static str;
    fn id(&self) -> &str;
    fn name_mut(&mut self) -> &mut String;
    fn description_mut(&mut self) -> &mut String;
    /// Applies the record's own flags (given ones only).
    fn apply(&mut self, p: &Parsed) -> anyhow::Result<()>;
    fn print(&self) -> String;
}

/// The fields policies and roles share, under the same names.
macro_rules! record_fields {
    () => {
        fn id(&self) -> &str {
            &self.id
        }
        fn name_mut(&mut self) -> &mut String {
            &mut self.name
        }
        fn description_mut(&mut self) -> &mut String {
            &mut self.description
        }
    };
}

impl CliRecord for AclPolicy {
    const NOUN: &'static str = "policy";
    record_fields!();
    fn apply(&mut self, p: &Parsed) -> anyhow::Result<()> {
        if let Some(raw) = p.value("rules") {
            self.rules = rules_arg(raw)?;
        }
        let dcs = p.list("valid-datacenter");
        if !dcs.is_empty() {
            self.datacenters = dcs.to_vec();
        }
        Ok(())
    }
    fn print(&self) -> String {
        print_policy(self)
    }
}

impl CliRecord for AclRole {
    const NOUN: &'static str = "role";
    record_fields!();
    fn apply(&mut self, p: &Parsed) -> anyhow::Result<()> {
        let policies = links(p, "policy");
        if !policies.is_empty() {
            self.policies = policies;
        }
        let services = service_identities(p);
        if !services.is_empty() {
            self.service_identities = services;
        }
        let nodes = node_identities(p)?;
        if !nodes.is_empty() {
            self.node_identities = nodes;
        }
        Ok(())
    }
    fn print(&self) -> String {
        print_role(self)
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The link and identity sections `consul acl token|role read` prints.
fn print_links(
    out: &mut String,
    policies: &[AclLink],
    roles: Option<&[AclLink]>,
    services: &[AclServiceIdentity],
    nodes: &[AclNodeIdentity],
) {
    out.push_str("Policies:\n");
    for p in policies {
        out.push_str(&format!("   {} - {}\n", p.id, p.name));
    }
    if let Some(roles) = roles {
        if !roles.is_empty() {
            out.push_str("Roles:\n");
            for r in roles {
                out.push_str(&format!("   {} - {}\n", r.id, r.name));
            }
        }
    }
    if !services.is_empty() {
        out.push_str("Service Identities:\n");
        for s in services {
            let dcs = if s.datacenters.is_empty() {
                "all".to_string()
            } else {
                s.datacenters.join(", ")
            };
            out.push_str(&format!("   {} (Datacenters: {dcs})\n", s.service_name));
        }
    }
    if !nodes.is_empty() {
        out.push_str("Node Identities:\n");
        for n in nodes {
            out.push_str(&format!(
                "   {} (Datacenter: {})\n",
                n.node_name, n.datacenter
            ));
        }
    }
}

fn print_token(t: &AclToken) -> String {
    let mut s = format!(
        "AccessorID:       {}\nSecretID:         {}\nDescription:      {}\nLocal:            {}\nCreate Time:      {}\n",
        t.accessor_id, t.secret_id, t.description, t.local, t.create_time
    );
    if let Some(exp) = &t.expiration_time {
        s.push_str(&format!("Expiration Time:  {exp}\n"));
    }
    print_links(
        &mut s,
        &t.policies,
        Some(&t.roles),
        &t.service_identities,
        &t.node_identities,
    );
    s
}

fn print_policy(p: &AclPolicy) -> String {
    let mut s = format!(
        "ID:           {}\nName:         {}\nDescription:  {}\nDatacenters:  {}\n",
        p.id,
        p.name,
        p.description,
        p.datacenters.join(", ")
    );
    if !p.rules.is_empty() {
        s.push_str(&format!("Rules:\n{}\n", p.rules));
    }
    s
}

fn print_role(r: &AclRole) -> String {
    let mut s = format!(
        "ID:           {}\nName:         {}\nDescription:  {}\n",
        r.id, r.name, r.description
    );
    print_links(
        &mut s,
        &r.policies,
        None,
        &r.service_identities,
        &r.node_identities,
    );
    s
}
