//! The scenarios both tiers run: live against the extended vcsim (asserting the simulator's own state
//! afterwards), and replayed from `recordings/<name>/` through wiremock (asserting the same outputs).
//! `cargo run --example record` re-records them.

#![allow(dead_code)]

use serde_json::{Value, json};

use super::sim::{Mode, Sim, UNREGISTERED_VM, vmx_path};

/// One vmha invocation and what it must produce.
pub struct Step {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout_has: Vec<&'static str>,
    pub stderr_has: Vec<&'static str>,
    /// A wrong password instead of the right one.
    pub bad_password: bool,
}

pub struct Scenario {
    pub name: &'static str,
    pub mode: Mode,
    /// What the simulator is made to say before the steps (live only).
    pub setup: fn(&Sim),
    pub steps: Vec<Step>,
    /// Checks the simulator's own state afterwards (live only).
    pub verify: fn(&Sim),
}

fn step(args: &[&str], code: i32, stdout_has: &[&'static str]) -> Step {
    Step {
        args: args.iter().map(|s| s.to_string()).collect(),
        code,
        stdout_has: stdout_has.to_vec(),
        stderr_has: vec![],
        bad_password: false,
    }
}

fn fails(args: &[&str], code: i32, stderr_has: &[&'static str]) -> Step {
    Step {
        stderr_has: stderr_has.to_vec(),
        ..step(args, code, &[])
    }
}

// vCenter inventory names (tests/vcsim/README.md).
pub const VM: &str = "DC0_C0_RP0_VM0";
pub const VM_UUID: &str = "cd0681bf-2f18-5c00-9b9b-8197c0095348";
pub const H1: &str = "DC0_C0_H0";
pub const H2: &str = "DC0_C0_H1";
pub const ESX_VM: &str = "ha-host_VM0";
pub const ESX_HOST: &str = "localhost.localdomain";

pub fn vm_vmx() -> String {
    vmx_path(VM)
}

fn nothing(_: &Sim) {}

fn assert_vm(sim: &Sim, name: &str, power: &str, host: Option<&str>) -> Value {
    let v = sim.vm(name);
    assert_eq!(v["registered"], true, "{name} should be registered: {v}");
    assert_eq!(v["power_state"], power, "{name}: {v}");
    if let Some(h) = host {
        assert_eq!(v["host"], h, "{name}: {v}");
    }
    assert!(v["question"].is_null(), "{name} has a pending question: {v}");
    v
}

fn other_question(sim: &Sim) {
    sim.guest_shutdown(VM);
    sim.post(
        &format!("/vm/{VM}/question"),
        json!({"once": true, "text": "The disk is full. Retry or cancel?", "message_id": "msg.hbacommon.outofspace",
               "choices": [{"key": "0", "label": "button.retry", "summary": "_Retry"},
                           {"key": "1", "label": "button.abort", "summary": "_Cancel"}],
               "default": 0, "cancel_key": "1"}),
    );
}

pub fn all() -> Vec<Scenario> {
    let vmx = vm_vmx();
    let unreg = vmx_path(UNREGISTERED_VM);
    let vmfs = format!("/vmfs/volumes/LocalDS_0/{VM}/{VM}.vmx");
    vec![
        Scenario {
            name: "vc-check",
            mode: Mode::VCenter,
            setup: nothing,
            steps: vec![step(
                &["check"],
                0,
                &["VMware vCenter Server", "apiType=VirtualCenter", "apiVersion="],
            )],
            verify: |sim| assert_eq!(sim.soap_calls("Logout"), 1),
        },
        Scenario {
            name: "esx-check",
            mode: Mode::Esx,
            setup: nothing,
            steps: vec![step(&["check"], 0, &["VMware ESX", "apiType=HostAgent"])],
            verify: |sim| assert_eq!(sim.soap_calls("Logout"), 1),
        },
        Scenario {
            name: "vc-bad-password",
            mode: Mode::VCenter,
            setup: nothing,
            steps: vec![Step {
                bad_password: true,
                ..fails(&["check"], 3, &["login refused", "vmha"])
            }],
            verify: |sim| assert_eq!(sim.soap_calls("RetrieveServiceContent"), 1),
        },
        Scenario {
            name: "vc-status",
            mode: Mode::VCenter,
            setup: nothing,
            steps: vec![
                step(
                    &["status", "--name", VM, "--json"],
                    0,
                    &[
                        r#""registered":true"#,
                        r#""power_state":"poweredOn""#,
                        r#""host":"DC0_C0_H0""#,
                        r#""heartbeat":"green""#,
                        r#""question":null"#,
                    ],
                ),
                step(
                    &["status", "--vmx", &vmx, "--json"],
                    0,
                    &[r#""name":"DC0_C0_RP0_VM0""#, r#""connection_state":"connected""#],
                ),
                step(
                    &["status", "--vmx", &vmfs],
                    0,
                    &["name: DC0_C0_RP0_VM0", "power_state: poweredOn"],
                ),
                step(
                    &["status", "--uuid", VM_UUID, "--json"],
                    0,
                    &[r#""name":"DC0_C0_RP0_VM0""#],
                ),
                step(&["status", "--vmx", &unreg, "--json"], 0, &[r#""registered":false"#]),
                step(&["status", "--name", "no-such-vm"], 0, &["registered: no"]),
            ],
            verify: |sim| assert_eq!(sim.vm(VM)["uuid"], VM_UUID),
        },
        Scenario {
            name: "esx-status",
            mode: Mode::Esx,
            setup: nothing,
            steps: vec![step(
                &["status", "--name", ESX_VM, "--json"],
                0,
                &[r#""registered":true"#, r#""host":"localhost.localdomain""#],
            )],
            verify: nothing,
        },
        Scenario {
            name: "vc-start-unregistered",
            mode: Mode::VCenter,
            setup: nothing,
            steps: vec![step(
                &["start", "--vmx", &unreg, "--host", H2],
                0,
                &[
                    "registered [LocalDS_0] vmha-unreg/vmha-unreg.vmx on DC0_C0_H1",
                    "powered on",
                    "heartbeat green",
                ],
            )],
            verify: |sim| {
                assert_vm(sim, UNREGISTERED_VM, "poweredOn", Some(H2));
            },
        },
        Scenario {
            name: "vc-start-idempotent",
            mode: Mode::VCenter,
            setup: nothing,
            steps: vec![step(
                &["start", "--name", VM, "--host", H1],
                0,
                &["already running on DC0_C0_H0"],
            )],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOn", Some(H1));
                assert_eq!(sim.soap_calls("PowerOnVM_Task"), 0);
            },
        },
        Scenario {
            name: "vc-start-off-on-host",
            mode: Mode::VCenter,
            setup: |sim| {
                sim.guest_shutdown(VM);
            },
            steps: vec![step(
                &["start", "--vmx", &vmx, "--host", H1],
                0,
                &["powered on", "heartbeat green"],
            )],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOn", Some(H1));
            },
        },
        Scenario {
            name: "vc-start-relocate",
            mode: Mode::VCenter,
            setup: |sim| {
                sim.guest_shutdown(VM);
            },
            steps: vec![step(
                &["start", "--vmx", &vmx, "--host", H2],
                0,
                &["relocating from DC0_C0_H0 to DC0_C0_H1", "powered on"],
            )],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOn", Some(H2));
            },
        },
        Scenario {
            name: "vc-start-takeover",
            mode: Mode::VCenter,
            setup: |sim| {
                sim.set_host_connection(H1, "notResponding");
                sim.arm_question_vmx(&vm_vmx());
            },
            steps: vec![step(
                &["start", "--vmx", &vmx, "--host", H2],
                0,
                &[
                    "host DC0_C0_H0 is notResponding",
                    "unregistered from DC0_C0_H0",
                    "registered",
                    "I moved it",
                    "powered on",
                ],
            )],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOn", Some(H2));
                // "I moved it" keeps the identity.
                assert_eq!(sim.vm(VM)["uuid"], VM_UUID);
            },
        },
        Scenario {
            name: "vc-start-refused",
            mode: Mode::VCenter,
            setup: nothing,
            steps: vec![fails(
                &["start", "--vmx", &vmx, "--host", H2],
                5,
                &["running on DC0_C0_H0", "nothing changed", "migrate"],
            )],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOn", Some(H1));
                assert_eq!(
                    sim.soap_calls("RelocateVM_Task")
                        + sim.soap_calls("PowerOnVM_Task")
                        + sim.soap_calls("UnregisterVM"),
                    0
                );
            },
        },
        Scenario {
            name: "vc-start-question",
            mode: Mode::VCenter,
            setup: |sim| {
                sim.guest_shutdown(VM);
                sim.arm_question(VM);
            },
            steps: vec![step(
                &["start", "--name", VM, "--host", H1],
                0,
                &[
                    "answered question \"This virtual machine might have been moved or copied.\" with \"I moved it\"",
                    "powered on",
                ],
            )],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOn", Some(H1));
                assert_eq!(sim.vm(VM)["uuid"], VM_UUID);
            },
        },
        Scenario {
            name: "vc-start-other-question",
            mode: Mode::VCenter,
            setup: other_question,
            steps: vec![
                fails(
                    &["start", "--name", VM, "--host", H1],
                    1,
                    &[
                        "The disk is full",
                        "button.retry",
                        "--answer msg.hbacommon.outofspace=CHOICE",
                    ],
                ),
                step(
                    &[
                        "start",
                        "--name",
                        VM,
                        "--host",
                        H1,
                        "--answer",
                        "msg.hbacommon.outofspace=button.retry",
                    ],
                    0,
                    &["with \"Retry\"", "powered on"],
                ),
            ],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOn", Some(H1));
            },
        },
        Scenario {
            name: "vc-start-lock-expires",
            mode: Mode::VCenter,
            setup: |sim| {
                sim.guest_shutdown(VM);
                sim.lock_vmx(&vm_vmx(), Some(2500));
            },
            steps: vec![step(
                &["start", "--vmx", &vmx, "--host", H1],
                0,
                &["files locked", "Failed to lock the file", "powered on"],
            )],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOn", Some(H1));
            },
        },
        Scenario {
            name: "vc-start-lock-held",
            mode: Mode::VCenter,
            setup: |sim| {
                sim.guest_shutdown(VM);
                sim.lock_vmx(&vm_vmx(), None);
            },
            steps: vec![fails(
                &["start", "--vmx", &vmx, "--host", H1, "--start-wait", "3"],
                1,
                &["still locked", "after 3 s", "Failed to lock the file"],
            )],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOff", Some(H1));
            },
        },
        Scenario {
            name: "vc-start-no-heartbeat",
            mode: Mode::VCenter,
            setup: |sim| {
                sim.guest_shutdown(VM);
                sim.post(&format!("/vm/{VM}/heartbeat-after-poweron"), json!({"status": "none"}));
            },
            steps: vec![step(
                &["start", "--name", VM, "--host", H1, "--start-wait", "2"],
                0,
                &[
                    "powered on",
                    "no green guest heartbeat after 2 s",
                    "VMware Tools is not reporting",
                ],
            )],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOn", Some(H1));
            },
        },
        Scenario {
            name: "vc-stop-guest",
            mode: Mode::VCenter,
            setup: nothing,
            steps: vec![step(
                &["stop", "--name", VM, "--host", H1],
                0,
                &["guest shutdown requested", "guest shut down", "stopped"],
            )],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOff", Some(H1));
                assert_eq!(sim.soap_calls("PowerOffVM_Task"), 0);
            },
        },
        Scenario {
            name: "vc-stop-tools-unavailable",
            mode: Mode::VCenter,
            setup: |sim| {
                sim.post(&format!("/vm/{VM}/tools"), json!({"running": false}));
            },
            steps: vec![step(
                &["stop", "--name", VM, "--host", H1],
                0,
                &["guest shutdown refused: ToolsUnavailable", "powered off", "stopped"],
            )],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOff", None);
            },
        },
        Scenario {
            name: "vc-stop-ignored",
            mode: Mode::VCenter,
            setup: |sim| {
                sim.post(&format!("/vm/{VM}/ignore-shutdown"), json!({"ignore": true}));
            },
            steps: vec![step(
                &["stop", "--name", VM, "--host", H1, "--stop-wait", "2"],
                0,
                &["waiting up to 2 s", "guest still running after 2 s", "powered off"],
            )],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOff", None);
            },
        },
        Scenario {
            name: "vc-stop-idempotent",
            mode: Mode::VCenter,
            setup: |sim| {
                sim.guest_shutdown(VM);
            },
            steps: vec![
                step(
                    &["stop", "--name", VM, "--host", H1],
                    0,
                    &["already powered off", "stopped"],
                ),
                step(
                    &["stop", "--vmx", &unreg, "--host", H1],
                    0,
                    &["not registered: nothing to stop"],
                ),
            ],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOff", None);
                assert_eq!(sim.soap_calls("ShutdownGuest") + sim.soap_calls("PowerOffVM_Task"), 0);
            },
        },
        Scenario {
            // Node-relative: the node standing for H2 neither stops nor reports as its own a VM on H1.
            name: "vc-stop-elsewhere",
            mode: Mode::VCenter,
            setup: nothing,
            steps: vec![
                step(
                    &["stop", "--name", VM, "--host", H2],
                    0,
                    &["runs on DC0_C0_H0, not on this node's host DC0_C0_H1: nothing to stop here"],
                ),
                step(
                    &["monitor", "--name", VM, "--host", H2, "--migration-wait", "0"],
                    14,
                    &["VM now runs on DC0_C0_H0"],
                ),
            ],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOn", Some(H1));
                assert_eq!(sim.soap_calls("ShutdownGuest") + sim.soap_calls("PowerOffVM_Task"), 0);
            },
        },
        Scenario {
            name: "vc-stop-unregister",
            mode: Mode::VCenter,
            setup: nothing,
            steps: vec![step(
                &["stop", "--vmx", &vmx, "--host", H1, "--unregister"],
                0,
                &["unregistered"],
            )],
            verify: |sim| assert_eq!(sim.vm(VM)["registered"], false),
        },
        Scenario {
            name: "esx-start-unregistered",
            mode: Mode::Esx,
            setup: nothing,
            steps: vec![
                step(
                    &["start", "--vmx", &unreg],
                    0,
                    &[
                        "registered [LocalDS_0] vmha-unreg/vmha-unreg.vmx on localhost.localdomain",
                        "powered on",
                    ],
                ),
                step(&["start", "--vmx", &unreg], 0, &["already running"]),
            ],
            verify: |sim| {
                assert_vm(sim, UNREGISTERED_VM, "poweredOn", Some(ESX_HOST));
            },
        },
        Scenario {
            name: "esx-group-move",
            mode: Mode::Esx,
            setup: nothing,
            steps: vec![
                step(
                    &["stop", "--vmx", &vmx_path(ESX_VM)],
                    0,
                    &["guest shut down", "unregistered"],
                ),
                step(&["stop", "--vmx", &vmx_path(ESX_VM)], 0, &["not registered"]),
                step(&["start", "--vmx", &vmx_path(ESX_VM)], 0, &["registered", "powered on"]),
            ],
            verify: |sim| {
                assert_vm(sim, ESX_VM, "poweredOn", Some(ESX_HOST));
                assert_eq!(sim.soap_calls("UnregisterVM"), 1);
                assert_eq!(sim.soap_calls("RegisterVM_Task"), 1);
            },
        },
        Scenario {
            name: "esx-stop-keep-registered",
            mode: Mode::Esx,
            setup: nothing,
            steps: vec![
                step(&["stop", "--name", ESX_VM, "--keep-registered"], 0, &["stopped"]),
                step(
                    &["start", "--name", ESX_VM],
                    0,
                    &["powering on (host localhost.localdomain)", "powered on"],
                ),
            ],
            verify: |sim| {
                assert_vm(sim, ESX_VM, "poweredOn", Some(ESX_HOST));
                assert_eq!(sim.soap_calls("UnregisterVM") + sim.soap_calls("RegisterVM_Task"), 0);
            },
        },
        Scenario {
            name: "vc-monitor",
            mode: Mode::VCenter,
            setup: nothing,
            steps: vec![
                step(
                    &["monitor", "--name", VM, "--host", H1],
                    0,
                    &["healthy: poweredOn on DC0_C0_H0, heartbeat green"],
                ),
                step(&["monitor", "--vmx", &unreg, "--host", H1], 10, &["not registered"]),
            ],
            verify: nothing,
        },
        Scenario {
            name: "vc-monitor-off",
            mode: Mode::VCenter,
            setup: |sim| {
                sim.guest_shutdown(VM);
            },
            steps: vec![step(
                &["monitor", "--name", VM, "--host", H1],
                11,
                &["VM is poweredOff (exit 11)"],
            )],
            verify: nothing,
        },
        Scenario {
            name: "vc-monitor-heartbeat",
            mode: Mode::VCenter,
            setup: |sim| {
                sim.set_heartbeat(VM, "red");
            },
            steps: vec![step(
                &["monitor", "--name", VM, "--host", H1],
                12,
                &["guest heartbeat is red"],
            )],
            verify: nothing,
        },
        Scenario {
            name: "vc-monitor-gray",
            mode: Mode::VCenter,
            setup: |sim| {
                sim.set_heartbeat(VM, "gray");
            },
            steps: vec![
                step(&["monitor", "--name", VM, "--host", H1], 0, &["[W]", "gray", "healthy"]),
                step(
                    &["monitor", "--name", VM, "--host", H1, "--require-heartbeat"],
                    12,
                    &["--require-heartbeat"],
                ),
            ],
            verify: nothing,
        },
        Scenario {
            name: "vc-monitor-question",
            mode: Mode::VCenter,
            setup: |sim| {
                other_question(sim);
                // The question stays pending after a start that may not answer it.
                let t = super::run::Target {
                    url: &sim.url,
                    user: &sim.user,
                    password: &sim.password,
                    trust: vec!["--ca-file".into(), sim.ca_file.display().to_string()],
                    record: None,
                };
                let r = super::run::vmha(
                    &t,
                    &["start".into(), "--name".into(), VM.into(), "--host".into(), H1.into()],
                );
                assert_eq!(r.code, 1, "{r:?}");
            },
            steps: vec![step(
                &["monitor", "--name", VM, "--host", H1],
                13,
                &["question pending", "The disk is full"],
            )],
            verify: |sim| assert!(!sim.vm(VM)["question"].is_null()),
        },
        Scenario {
            name: "vc-monitor-migrated",
            mode: Mode::VCenter,
            setup: nothing,
            steps: vec![
                step(
                    &["migrate", "--name", VM, "--to-host", H2],
                    0,
                    &["live-migrating from DC0_C0_H0 to DC0_C0_H1", "now on DC0_C0_H1"],
                ),
                step(
                    &["migrate", "--name", VM, "--to-host", H2],
                    0,
                    &["already on DC0_C0_H1"],
                ),
                step(
                    &["monitor", "--name", VM, "--host", H1, "--migration-wait", "1"],
                    14,
                    &["waiting 1 s", "now runs on DC0_C0_H1"],
                ),
                step(&["monitor", "--name", VM, "--host", H2], 0, &["healthy"]),
            ],
            verify: |sim| {
                assert_vm(sim, VM, "poweredOn", Some(H2));
            },
        },
        Scenario {
            name: "vc-monitor-host-down",
            mode: Mode::VCenter,
            setup: |sim| {
                sim.set_host_connection(H1, "notResponding");
            },
            steps: vec![
                step(
                    &["monitor", "--name", VM, "--host", H1],
                    15,
                    &["host DC0_C0_H0 is notResponding"],
                ),
                fails(
                    &["stop", "--name", VM, "--host", H1],
                    1,
                    &["cannot be stopped from here"],
                ),
            ],
            verify: nothing,
        },
        Scenario {
            name: "esx-monitor-and-migrate",
            mode: Mode::Esx,
            setup: nothing,
            steps: vec![
                step(
                    &["monitor", "--name", ESX_VM],
                    0,
                    &["healthy: poweredOn on localhost.localdomain"],
                ),
                fails(
                    &["migrate", "--name", ESX_VM, "--to-host", "localhost.localdomain"],
                    2,
                    &["migrate needs vCenter"],
                ),
            ],
            verify: |sim| assert_eq!(sim.soap_calls("RelocateVM_Task"), 0),
        },
    ]
}

/// Checks one run against its step.
pub fn check_step(scenario: &str, i: usize, st: &Step, r: &super::run::Run) {
    let ctx = format!(
        "{scenario} step {i} (vmha {}):\n--- stdout\n{}--- stderr\n{}",
        st.args.join(" "),
        r.stdout,
        r.stderr
    );
    assert_eq!(r.code, st.code, "exit code, {ctx}");
    for s in &st.stdout_has {
        assert!(r.stdout.contains(s), "stdout lacks {s:?}, {ctx}");
    }
    for s in &st.stderr_has {
        assert!(r.stderr.contains(s), "stderr lacks {s:?}, {ctx}");
    }
}
