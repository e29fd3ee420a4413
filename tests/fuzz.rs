//! Fuzz-style test of the XML decoder and the response types: deterministic mutations of the recorded
//! responses (`recordings/*/*.txt`) and of the real captures in `../shared/vcenter-captures` (read in
//! place, never copied; skipped, saying so, where that folder does not exist). Every mutant goes through
//! `soap::xml::parse`, `soap::client::decode_envelope`, `soap::Fault` and the `vim::types` decoders.
//! A panic anywhere fails the test; errors are the expected outcome for most mutants.

use std::path::{Path, PathBuf};
use std::time::Instant;

use vmha::client::VmState;
use vmha::soap::client::decode_envelope;
use vmha::soap::record::parse_exchange;
use vmha::soap::xml::{DEFAULT_MAX_DEPTH, parse};
use vmha::soap::{Element, Fault, SoapError};
use vmha::vim::{
    AboutInfo, MoRef, ObjectContent, QuestionInfo, RetrieveResult, ServiceContent, TaskInfo, UpdateSet, UserSession,
};

const CASES: u64 = 106_000;
const THREADS: u64 = 2;
/// Mutants of large documents cost more; the seed corpus is clipped at this size per document so the
/// case count fits the time budget of a debug build (the unclipped documents are still decoded once).
const MAX_SEED_BYTES: usize = 16 * 1024;

/// xorshift64*: small, deterministic, good enough to pick positions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

struct Seed {
    origin: String,
    method: String,
    status: u16,
    body: Vec<u8>,
}

fn recordings() -> Vec<Seed> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("recordings");
    let mut files = Vec::new();
    for dir in std::fs::read_dir(&root).expect("recordings/").flatten() {
        if let Ok(entries) = std::fs::read_dir(dir.path()) {
            files.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "txt")),
            );
        }
    }
    files.sort();
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let ex = parse_exchange(&text).unwrap_or_else(|| panic!("{} is not a recording", p.display()));
            Seed {
                origin: p.display().to_string(),
                method: ex.method,
                status: ex.status,
                body: ex.response.into_bytes(),
            }
        })
        .collect()
}

fn capture_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            capture_files(&p, out);
        } else if matches!(p.extension().and_then(|x| x.to_str()), Some("xml" | "soap")) {
            out.push(p);
        }
    }
}

fn captures() -> Vec<Seed> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vcenter-captures");
    if !dir.is_dir() {
        eprintln!(
            "SKIPPED the real captures: {} does not exist here; fuzzing the recordings only",
            dir.display()
        );
        return Vec::new();
    }
    let mut files = Vec::new();
    capture_files(&dir, &mut files);
    files.sort();
    files
        .iter()
        .filter_map(|p| {
            let body = std::fs::read(p).ok()?;
            let is_fault = String::from_utf8_lossy(&body).contains("Fault>");
            Some(Seed {
                origin: p.display().to_string(),
                method: "capture".into(),
                status: if is_fault { 500 } else { 200 },
                body,
            })
        })
        .collect()
}

// ---- decoding: everything a response can go through ----------------------------------------------------

/// Runs every decoder that applies to `el` and, for a few levels, to its children.
fn decode_tree(el: &Element, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    if el.type_attr.is_some() {
        let _ = MoRef::from_xml(el);
    }
    let xsi = el.xsi_type.as_deref().unwrap_or("");
    match (el.name.as_str(), xsi) {
        ("returnval", _) => {
            let _ = ServiceContent::from_xml(el);
            let _ = UserSession::from_xml(el);
            let _ = RetrieveResult::from_xml(el);
            let _ = UpdateSet::from_xml(el);
            let _ = TaskInfo::from_xml(el);
            if let Ok(oc) = ObjectContent::from_xml(el) {
                vm_state(&oc);
            }
        }
        ("about", _) => {
            let _ = AboutInfo::from_xml(el);
        }
        ("objects", _) => {
            if let Ok(oc) = ObjectContent::from_xml(el) {
                vm_state(&oc);
            }
        }
        ("question", _) | (_, "VirtualMachineQuestionInfo") => {
            let _ = QuestionInfo::from_xml(el);
        }
        (_, "TaskInfo") | ("info", _) => {
            let _ = TaskInfo::from_xml(el);
        }
        (_, "LocalizedMethodFault") | ("error", _) | ("fault", _) => {
            let _ = Fault::from_localized(el);
        }
        ("Fault", _) => {
            let _ = Fault::from_soap_fault(el);
        }
        _ => {}
    }
    for c in &el.children {
        decode_tree(c, budget);
    }
}

fn vm_state(oc: &ObjectContent) {
    let lookup = |path: &str| -> Option<&Element> {
        if let Some(v) = oc.prop(path) {
            return Some(v);
        }
        let mut parts = path.split('.');
        let mut el = oc.prop(parts.next()?)?;
        for p in parts {
            el = el.child(p)?;
        }
        Some(el)
    };
    let _ = VmState::from_props(&oc.obj, lookup);
}

/// What the transport does with a body, minus the network. True when the body still parsed as XML.
fn decode_body(method: &str, status: u16, body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let Ok(root) = parse(&text, DEFAULT_MAX_DEPTH) else {
        return false;
    };
    let mut budget = 4000;
    decode_tree(&root, &mut budget);
    match decode_envelope(method, status, root) {
        Ok(resp) => {
            let mut budget = 4000;
            decode_tree(&resp, &mut budget);
        }
        Err(SoapError::Fault { fault, .. }) => {
            let _ = fault.to_string();
            let _ = fault.is_file_lock();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    true
}

// ---- mutations ----------------------------------------------------------------------------------------

const TOKENS: &[&str] = &[
    "<",
    ">",
    "</",
    "/>",
    "&",
    ";",
    "&amp;",
    "&lt;",
    "&#0;",
    "&#x0;",
    "&#xD800;",
    "&#x110000;",
    "&#99999999999;",
    "&unknown;",
    "&#;",
    "&#x;",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?pi x?>",
    "<?xml version=\"1.0\"?>",
    "<!DOCTYPE x [<!ENTITY a \"&a;&a;\">]>",
    "<!DOCTYPE x SYSTEM \"file:///etc/passwd\">",
    "<!ENTITY b \"b\">",
    " xsi:type=\"\"",
    " xsi:type=\"xsd:\"",
    " xsi:type=\"TaskInfo\"",
    " xsi:type=\"LocalizedMethodFault\"",
    " type=\"\"",
    " type=\"VirtualMachine\"",
    " xmlns=\"\"",
    " xmlns:xsi=\"\"",
    " a=\"1\" a=\"2\"",
    " a='",
    "\"",
    "'",
    "=",
    ":",
    "::",
    "xsi:",
    "\u{0}",
    "\u{FEFF}",
    "\u{10FFFF}",
    "é",
    "\r\n",
    "\t",
    "-1",
    "18446744073709551616",
    "NaN",
    "<returnval/>",
    "<val/>",
    "<obj type=\"VirtualMachine\"/>",
    "<propSet/>",
    "<name>runtime.question</name>",
    "<choiceInfo/>",
    "<state>error</state>",
    "<Body/>",
    "<Fault/>",
    "<detail/>",
    "<faultstring/>",
    "<soapenv:Body>",
    "</soapenv:Body>",
    "</soapenv:Envelope>",
];

const NAMES: &[&str] = &[
    "returnval",
    "objects",
    "obj",
    "propSet",
    "name",
    "val",
    "changeSet",
    "op",
    "filterSet",
    "objectSet",
    "question",
    "choice",
    "choiceInfo",
    "message",
    "info",
    "state",
    "result",
    "error",
    "fault",
    "about",
    "Body",
    "Envelope",
    "Fault",
    "detail",
    "faultstring",
    "version",
    "token",
    "key",
    "powerState",
];

fn find_all(hay: &[u8], b: u8) -> Vec<usize> {
    hay.iter()
        .enumerate()
        .filter(|(_, c)| **c == b)
        .map(|(i, _)| i)
        .collect()
}

/// Positions of tag names (just after `<` or `</`).
fn tag_positions(doc: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for i in find_all(doc, b'<') {
        let mut s = i + 1;
        if doc.get(s) == Some(&b'/') {
            s += 1;
        }
        let mut e = s;
        while e < doc.len() && (doc[e].is_ascii_alphanumeric() || doc[e] == b':' || doc[e] == b'_') {
            e += 1;
        }
        if e > s {
            out.push((s, e));
        }
    }
    out
}

fn mutate(rng: &mut Rng, doc: &mut Vec<u8>, corpus: &[Seed]) -> &'static str {
    let len = doc.len();
    match rng.below(12) {
        0 => {
            // Byte flips.
            for _ in 0..1 + rng.below(8) {
                if doc.is_empty() {
                    break;
                }
                let i = rng.below(doc.len());
                doc[i] ^= 1 << rng.below(8);
            }
            "flip"
        }
        1 => {
            // Random bytes.
            for _ in 0..1 + rng.below(4) {
                if doc.is_empty() {
                    break;
                }
                let i = rng.below(doc.len());
                doc[i] = rng.next() as u8;
            }
            "byte"
        }
        2 => {
            doc.truncate(rng.below(len + 1));
            "truncate"
        }
        3 => {
            // Duplicate a slice in place.
            let a = rng.below(len + 1);
            let b = (a + rng.below(512)).min(len);
            let piece = doc[a..b].to_vec();
            let at = rng.below(doc.len() + 1);
            doc.splice(at..at, piece);
            "duplicate"
        }
        4 => {
            // Splice a slice of another document in.
            let other = &rng.pick(corpus).body;
            let a = rng.below(other.len() + 1);
            let b = (a + rng.below(1024)).min(other.len());
            let at = rng.below(len + 1);
            let end = (at + rng.below(256)).min(len);
            doc.splice(at..end, other[a..b].iter().copied());
            "splice"
        }
        5 => {
            // Delete a slice.
            let a = rng.below(len + 1);
            let b = (a + rng.below(256)).min(len);
            doc.drain(a..b);
            "delete"
        }
        6 => {
            // Deep nesting just inside a random tag boundary, around the deepest-allowed edge.
            let depth = *rng.pick(&[200usize, 250, 254, 255, 256, 257, 300, 1000, 5000]);
            let name = rng.pick(NAMES);
            let gts = find_all(doc, b'>');
            let at = gts.get(rng.below(gts.len())).map_or(0, |i| i + 1);
            let mut ins = format!("<{name}>").repeat(depth).into_bytes();
            if rng.below(2) == 0 {
                ins.extend(format!("</{name}>").repeat(depth).into_bytes());
            }
            doc.splice(at.min(doc.len())..at.min(doc.len()), ins);
            "nest"
        }
        7 => {
            // Entity and markup tricks.
            let tok = rng.pick(TOKENS);
            let at = rng.below(len + 1);
            doc.splice(at..at, tok.bytes());
            "token"
        }
        8 => {
            // Billion-laughs / external entity prolog in front of the document.
            let prolog: &[u8] = if rng.below(2) == 0 {
                b"<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]>"
            } else {
                b"<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
            };
            doc.splice(0..0, prolog.iter().copied());
            let at = rng.below(doc.len() + 1);
            doc.splice(at..at, b"&c;&x;".iter().copied());
            "dtd"
        }
        9 if rng.below(2) == 0 => {
            // Rename one tag (open or close), breaking or re-pairing structure.
            let tags = tag_positions(doc);
            if let Some(&(s, e)) = tags.get(rng.below(tags.len())) {
                doc.splice(s..e, rng.pick(NAMES).bytes());
            }
            "rename"
        }
        9 => {
            // Rename every tag of one name: the document stays well-formed, the decoders see wrong shapes.
            let tags = tag_positions(doc);
            if let Some(&(s, e)) = tags.get(rng.below(tags.len())) {
                let old = String::from_utf8_lossy(&doc[s..e]).into_owned();
                let new = rng.pick(NAMES);
                let text = String::from_utf8_lossy(doc)
                    .replace(&format!("<{old}>"), &format!("<{new}>"))
                    .replace(&format!("<{old} "), &format!("<{new} "))
                    .replace(&format!("</{old}>"), &format!("</{new}>"));
                *doc = text.into_bytes();
            }
            "rename-all"
        }
        10 => {
            // Replace a text node with an odd value.
            let gts = find_all(doc, b'>');
            if let Some(&i) = gts.get(rng.below(gts.len())) {
                let end = doc[i + 1..]
                    .iter()
                    .position(|&c| c == b'<')
                    .map_or(doc.len(), |p| i + 1 + p);
                let v = rng.pick(&[
                    "",
                    "-1",
                    "99999999999999999999",
                    "poweredOnOff",
                    "\u{0}",
                    "&amp;&",
                    "true",
                    " ",
                ]);
                doc.splice(i + 1..end, v.bytes());
            }
            "text"
        }
        _ if rng.below(2) == 0 => {
            // Drop one element with its content: well-formed unless it nests its own name.
            let tags = tag_positions(doc);
            if let Some(&(s, e)) = tags.get(rng.below(tags.len()))
                && doc[s - 1] == b'<'
            {
                let close = format!("</{}>", String::from_utf8_lossy(&doc[s..e]));
                if let Some(p) = doc[e..].windows(close.len()).position(|w| w == close.as_bytes()) {
                    doc.drain(s - 1..e + p + close.len());
                }
            }
            "drop-element"
        }
        _ => {
            // Drop a whole element (from one tag to the next tag's end).
            let tags = tag_positions(doc);
            if tags.len() > 2 {
                let i = rng.below(tags.len() - 1);
                let (a, _) = tags[i];
                let (_, b) = tags[i + 1 + rng.below((tags.len() - i - 1).min(4))];
                doc.drain(a.saturating_sub(1)..b.min(doc.len()));
            }
            "drop"
        }
    }
}

/// Runs this thread's share of the cases; returns how many mutants still parsed, and the mutations used.
fn fuzz_stream(thread: u64, corpus: &[Seed]) -> (u64, std::collections::BTreeMap<&'static str, u64>) {
    let mut rng = Rng(0x5eed_f00d_cafe_d00d ^ (thread + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut by_kind: std::collections::BTreeMap<&'static str, u64> = Default::default();
    let mut parsed_ok = 0u64;
    for i in 0..CASES / THREADS {
        let case = i * THREADS + thread;
        let seed = &corpus[rng.below(corpus.len())];
        let mut doc = seed.body.clone();
        let mut kinds = Vec::new();
        for _ in 0..1 + rng.below(3) {
            kinds.push(mutate(&mut rng, &mut doc, corpus));
        }
        for k in &kinds {
            *by_kind.entry(k).or_default() += 1;
        }
        let status = *rng.pick(&[seed.status, seed.status, 200, 500, 503]);
        let outcome = std::panic::catch_unwind(|| decode_body(&seed.method, status, &doc));
        let Ok(parsed) = outcome else {
            let path = std::env::temp_dir().join(format!("vmha-fuzz-case-{case}.xml"));
            let _ = std::fs::write(&path, &doc);
            panic!(
                "case {case}: decoding a mutant ({}) of {} panicked; the mutant is in {}",
                kinds.join("+"),
                seed.origin,
                path.display()
            );
        };
        parsed_ok += u64::from(parsed);
    }
    (parsed_ok, by_kind)
}

#[test]
fn mutated_responses_never_panic() {
    let started = Instant::now();
    let mut corpus = recordings();
    let n_recordings = corpus.len();
    let caps = captures();
    let n_captures = caps.len();
    corpus.extend(caps);
    assert!(n_recordings > 0, "no recordings found");

    // Every seed decodes once whole, so the unclipped documents are covered too.
    for s in &corpus {
        decode_body(&s.method, s.status, &s.body);
    }
    for s in &mut corpus {
        if s.body.len() > MAX_SEED_BYTES {
            s.body.truncate(MAX_SEED_BYTES);
        }
    }

    // Two deterministic streams of cases, one per thread (CI runners have 2 cores).
    let results: Vec<(u64, std::collections::BTreeMap<&str, u64>)> = std::thread::scope(|scope| {
        let corpus = &corpus;
        let workers: Vec<_> = (0..THREADS)
            .map(|t| scope.spawn(move || fuzz_stream(t, corpus)))
            .collect();
        workers.into_iter().map(|w| w.join().expect("fuzz worker")).collect()
    });
    let parsed_ok: u64 = results.iter().map(|r| r.0).sum();
    let mut by_kind: std::collections::BTreeMap<&str, u64> = Default::default();
    for (_, kinds) in &results {
        for (k, n) in kinds {
            *by_kind.entry(k).or_default() += n;
        }
    }
    println!(
        "fuzz: {CASES} cases from {n_recordings} recorded and {n_captures} captured responses, zero panics, in {:.1?}",
        started.elapsed()
    );
    println!("fuzz: {parsed_ok} mutants still parsed as XML; mutations applied: {by_kind:?}");
}
