//! Reads every real vCenter/ESX response in `../shared/vcenter-captures/` (never copied into the repo) and
//! decodes it with vmha's own types. Skips, saying so, where that folder does not exist.

use std::path::{Path, PathBuf};

use vmha::client::VmState;
use vmha::soap::client::decode_envelope;
use vmha::soap::xml::{DEFAULT_MAX_DEPTH, parse};
use vmha::soap::{Element, Fault, SoapError};
use vmha::vim::{MoRef, ObjectContent, QuestionInfo, RetrieveResult, ServiceContent, UpdateSet, UserSession};

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vcenter-captures")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if matches!(p.extension().and_then(|x| x.to_str()), Some("xml" | "soap")) {
            out.push(p);
        }
    }
}

/// A VM's state from whole-object properties (`runtime`, `config`) as inventory tools read them.
fn vm_summary(oc: &ObjectContent) -> Result<String, String> {
    let lookup = |path: &str| -> Option<&Element> {
        if let Some(v) = oc.prop(path) {
            return Some(v);
        }
        let mut parts = path.split('.');
        let head = parts.next()?;
        let mut el = oc.prop(head)?;
        for p in parts {
            el = el.child(p)?;
        }
        Some(el)
    };
    let s = VmState::from_props(&oc.obj, lookup).map_err(|e| e.to_string())?;
    if let Some(q) = oc.prop("runtime").and_then(|r| r.child("question")) {
        QuestionInfo::from_xml(q).map_err(|e| e.to_string())?;
    }
    Ok(format!("{}={}", s.moref.value, s.power_state))
}

fn decode(resp: &Element) -> Result<String, String> {
    let name = resp.name.as_str();
    let rv = resp.child("returnval");
    let e = |x: vmha::vim::DecodeError| x.to_string();
    match name {
        "RetrieveServiceContentResponse" => {
            let sc = ServiceContent::from_xml(rv.ok_or("no returnval")?).map_err(e)?;
            if sc.session_manager.is_none() {
                return Err("no sessionManager".into());
            }
            Ok(format!(
                "{} ({}, API {})",
                sc.about.full_name, sc.about.api_type, sc.about.api_version
            ))
        }
        "LoginResponse" => UserSession::from_xml(rv.ok_or("no returnval")?)
            .map(|u| format!("user {}", u.user_name))
            .map_err(e),
        "RetrievePropertiesExResponse" => {
            let r = match rv {
                Some(r) => RetrieveResult::from_xml(r).map_err(e)?,
                None => RetrieveResult::default(),
            };
            objects_summary(&r.objects)
        }
        "RetrievePropertiesResponse" => {
            let objs = resp
                .children_named("returnval")
                .map(ObjectContent::from_xml)
                .collect::<Result<Vec<_>, _>>()
                .map_err(e)?;
            objects_summary(&objs)
        }
        "WaitForUpdatesExResponse" => {
            let u = UpdateSet::from_xml(rv.ok_or("no returnval")?).map_err(e)?;
            Ok(format!("version {}, {} object updates", u.version, u.objects.len()))
        }
        "FindByUuidResponse"
        | "FindByInventoryPathResponse"
        | "FindByDatastorePathResponse"
        | "CreateFilterResponse"
        | "CreateContainerViewResponse"
        | "CreatePropertyCollectorResponse" => match rv {
            Some(r) => MoRef::from_xml(r).map(|m| m.to_string()).map_err(e),
            None => Ok("not found".into()),
        },
        "LogoutResponse"
        | "DestroyPropertyFilterResponse"
        | "CancelWaitForUpdatesResponse"
        | "DestroyPropertyCollectorResponse" => Ok("empty".into()),
        other => Err(format!("no decoder for {other}")),
    }
}

fn objects_summary(objs: &[ObjectContent]) -> Result<String, String> {
    let mut vms = Vec::new();
    for o in objs {
        if o.obj.kind == "VirtualMachine" && (o.prop("runtime").is_some() || o.prop("runtime.powerState").is_some()) {
            vms.push(vm_summary(o)?);
        }
    }
    Ok(format!(
        "{} objects{}",
        objs.len(),
        if vms.is_empty() {
            String::new()
        } else {
            format!(", VMs: {}", vms.join(" "))
        }
    ))
}

fn check_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let root = parse(&text, DEFAULT_MAX_DEPTH).map_err(|e| e.to_string())?;
    let is_fault = root
        .child("Body")
        .and_then(|b| b.children.first())
        .is_some_and(|c| c.name == "Fault");
    match decode_envelope("capture", if is_fault { 500 } else { 200 }, root) {
        Ok(resp) => decode(&resp),
        Err(SoapError::Fault { fault, .. }) => fault_summary(&fault),
        Err(other) => Err(other.to_string()),
    }
}

fn fault_summary(f: &Fault) -> Result<String, String> {
    if f.type_name.is_empty() {
        return Err("fault without a type".into());
    }
    Ok(format!("fault {:?} ({})", f.kind, f.message))
}

/// A check's result: how many files passed, or why it was skipped.
enum Checked {
    Passed(usize),
    Skipped(String),
}

fn every_capture_parses() -> Result<Checked, String> {
    let dir = captures_dir();
    if !dir.is_dir() {
        return Ok(Checked::Skipped(format!(
            "{} does not exist here; the real-capture check runs only where ../shared is present",
            dir.display()
        )));
    }
    let mut all = Vec::new();
    files(&dir, &mut all);
    all.sort();
    if all.is_empty() {
        return Err(format!("no captures found under {}", dir.display()));
    }
    let mut failures = 0;
    for f in &all {
        let rel = f.strip_prefix(&dir).unwrap_or(f).display();
        match check_file(f) {
            Ok(what) => println!("ok    {rel}: {what}"),
            Err(why) => {
                failures += 1;
                println!("FAIL  {rel}: {why}");
            }
        }
    }
    println!("{} files, {} failures", all.len(), failures);
    match failures {
        0 => Ok(Checked::Passed(all.len())),
        n => Err(format!(
            "{n} of {} captures did not decode (see the report above)",
            all.len()
        )),
    }
}

fn bad_password_capture_is_invalid_login() -> Result<Checked, String> {
    let f = captures_dir().join("pyvmomi/basic_connection_bad_password__1__Login.xml");
    if !f.exists() {
        return Ok(Checked::Skipped(format!("{} not present", f.display())));
    }
    let text = std::fs::read_to_string(&f).map_err(|e| e.to_string())?;
    let root = parse(&text, 64).map_err(|e| e.to_string())?;
    match decode_envelope("Login", 500, root) {
        Err(e) if e.fault().is_some_and(|f| f.kind == vmha::soap::FaultKind::InvalidLogin) => Ok(Checked::Passed(1)),
        other => Err(format!("expected an InvalidLogin fault, got {other:?}")),
    }
}

type Check = fn() -> Result<Checked, String>;

/// Runs without libtest's harness, so that a skip is printed where `cargo test` shows it, not captured.
fn main() {
    let checks: [(&str, Check); 2] = [
        ("every_capture_parses", every_capture_parses),
        (
            "bad_password_capture_is_invalid_login",
            bad_password_capture_is_invalid_login,
        ),
    ];
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, check) in checks {
        match check() {
            Ok(Checked::Passed(n)) => {
                passed += 1;
                println!("captures: {name}: ok ({n} files)");
            }
            Ok(Checked::Skipped(why)) => {
                skipped += 1;
                println!("captures: {name}: SKIPPED: {why}");
            }
            Err(why) => {
                failed += 1;
                println!("captures: {name}: FAILED: {why}");
            }
        }
    }
    println!("captures: {passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        std::process::exit(1);
    }
}
