use super::testing::{DEMO, demo, signed};
use super::*;

fn parse_err(text: &str) -> String {
    match Catalog::parse("t.toml", text.as_bytes()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const MINI: &str = r#"format = 1
authority = "test"
version = "1"
date = 2026-04-01

[[purposes]]
id = "p"
description = "p"

[[items]]
id = "it"
name = "测试"
category = "c"
legal_basis = "b"
source = "samr"
subject = "legal_person"
restorable = false
sharing = "conditional"
fields = [
  { name = "a", type = "string" },
  { name = "b", type = "resident_id", personal = true, form = "resident_id" },
]

[[items.grants]]
trust_domains = ["region-a.credit.test"]
departments = ["tax"]
purposes = ["p"]
fields = ["a", "b"]
"#;

#[test]
fn mini_parses() {
    let c = Catalog::parse("t.toml", MINI.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.items.len(), 1);
}

#[test]
fn demo_parses_and_signature_round_trips() {
    let c = demo();
    assert!(c.catalog().items.len() >= 8);
    assert_eq!(c.digest_hex().len(), 64);
    let pair = AuthorityKeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let pem = pair.public_key().to_pem();
    let public = AuthorityPublicKey::from_pem(&pem).unwrap_or_else(|e| panic!("{e}"));
    let again =
        AuthorityKeyPair::from_pem(&pair.private_key_pem()).unwrap_or_else(|e| panic!("{e}"));
    let sig = again.sign(DEMO.as_bytes());
    assert!(SignedCatalog::verify_and_parse("demo.toml", DEMO.as_bytes(), &sig, &public).is_ok());
    assert!(
        SignedCatalog::verify_and_parse("demo.toml", DEMO.as_bytes(), sig.trim_end(), &public)
            .is_ok()
    );
}

#[test]
fn tampering_and_other_keys_are_refused() {
    let pair = AuthorityKeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let other = AuthorityKeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let bytes = DEMO.as_bytes();
    let sig = pair.sign(bytes);
    let key = pair.public_key();
    // Every byte position, one bit flipped.
    for i in 0..bytes.len() {
        let mut changed = bytes.to_vec();
        changed[i] ^= 0x01;
        let got = SignedCatalog::verify_and_parse("demo.toml", &changed, &sig, &key);
        assert!(
            matches!(got, Err(CatalogError::Signature { .. })),
            "byte {i} changed and accepted"
        );
    }
    let by_other = other.sign(bytes);
    assert!(matches!(
        SignedCatalog::verify_and_parse("demo.toml", bytes, &by_other, &key),
        Err(CatalogError::Signature {
            reason: SignatureError::Invalid(_),
            ..
        })
    ));
    for bad in [
        "",
        "zz",
        &sig.to_uppercase(),
        &format!("{sig}\n"),
        &format!(" {sig}"),
    ] {
        assert!(
            SignedCatalog::verify_and_parse("demo.toml", bytes, bad, &key).is_err(),
            "signature {bad:?} accepted"
        );
    }
}

#[test]
fn errors_name_file_line_and_key() {
    let e = parse_err(&MINI.replace(r#"type = "string""#, r#"type = "phone""#));
    assert!(
        e.starts_with("t.toml:20:24: items[0].fields[0].type: unknown variant `phone`"),
        "{e}"
    );
    assert!(e.contains("items[0].fields[0].type"), "{e}");
    assert!(e.contains("phone"), "{e}");

    let e = parse_err(&MINI.replace(r#"fields = ["a", "b"]"#, r#"fields = ["a", "phone"]"#));
    assert_eq!(
        e,
        r#"t.toml:28:16: items[0].grants[0].fields[1]: unknown field "phone" in item "it""#
    );

    let dup = format!("{MINI}\n{}", &MINI[MINI.find("[[items]]").unwrap_or(0)..]);
    let e = parse_err(&dup);
    assert!(
        e.starts_with("t.toml:31:6: items[1].id: duplicate item id \"it\""),
        "{e}"
    );

    let e = parse_err(&MINI.replace(r#"purposes = ["p"]"#, r#"purposes = ["q"]"#));
    assert!(
        e.contains(":27:13:")
            && e.contains("items[0].grants[0].purposes[0]")
            && e.contains("unknown purpose \"q\""),
        "{e}"
    );

    let e = parse_err(&MINI.replace("restorable = false", "restorable = false\ncolour = 1"));
    assert!(
        e.starts_with("t.toml:18:1: items[0].colour: unknown field `colour`"),
        "{e}"
    );

    let e = parse_err(&MINI.replace(r#", form = "resident_id""#, ""));
    assert!(
        e.contains(":21:") && e.contains("has no default `form`"),
        "{e}"
    );

    let e = parse_err(&MINI.replace(r#"form = "resident_id""#, r#"form = "raw""#));
    assert!(e.contains("cannot be raw"), "{e}");

    let e = parse_err(&MINI.replace(
        r#"{ name = "a", type = "string" },"#,
        r#"{ name = "b", type = "string" },"#,
    ));
    assert!(e.contains("duplicate field \"b\""), "{e}");

    let e = parse_err(&MINI.replace("region-a.credit.test", "Region-A"));
    assert!(
        e.contains("items[0].grants[0].trust_domains[0]") && e.contains("trust domain"),
        "{e}"
    );

    let e = parse_err(&MINI.replace(
        r#"departments = ["tax"]"#,
        r#"departments = ["Tax Bureau"]"#,
    ));
    assert!(e.contains("malformed department code"), "{e}");

    let e = parse_err(&MINI.replace("format = 1", "format = 2"));
    assert!(
        e.starts_with("t.toml:1:10: format: unsupported catalog format"),
        "{e}"
    );

    let e = parse_err(&MINI.replace(
        "fields = [\"a\", \"b\"]",
        "fields = [\"a\", \"b\"]\nforms = { a = \"generalise(year)\" }",
    ));
    assert!(e.contains("needs a date field"), "{e}");

    let e = parse_err(&MINI.replace(
        "fields = [\"a\", \"b\"]",
        "fields = [\"a\"]\nforms = { b = \"raw\" }",
    ));
    assert!(e.contains("does not list in `fields`"), "{e}");

    let e = parse_err(&MINI.replace("sharing = \"conditional\"", "sharing = \"none\""));
    assert!(
        e.contains("grants are only allowed on conditional items"),
        "{e}"
    );

    let e = parse_err("format = 1\nauthority = \"x\n");
    assert!(e.starts_with("t.toml:2:"), "{e}");

    let conflict = format!(
        "{MINI}\n[[items.grants]]\ntrust_domains = [\"region-a.credit.test\"]\ndepartments = [\"tax\"]\npurposes = [\"p\"]\nfields = [\"b\"]\nforms = {{ b = \"pseudonym\" }}\n"
    );
    let e = parse_err(&conflict);
    assert!(e.contains("both as resident_id and as pseudonym"), "{e}");
}

#[test]
fn missing_keys_are_located() {
    let e = parse_err(&MINI.replace("category = \"c\"\n", ""));
    assert!(
        e.contains("missing field `category`") && e.contains("items[0]"),
        "{e}"
    );
    let e = parse_err(&MINI.replace("date = 2026-04-01", "date = \"2026-04-01\""));
    assert!(e.starts_with("t.toml:4:8: date:"), "{e}");
}

proptest::proptest! {
    /// Parser robustness: arbitrary edits of a valid catalog give Ok or a located error, never a
    /// panic.
    #[test]
    fn parser_never_panics(pos in 0usize..2000, cut in 0usize..40, insert in "\\PC{0,12}") {
        let mut text = MINI.to_owned();
        let mut start = pos.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + cut).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.replace_range(start..end, &insert);
        if let Err(e) = Catalog::parse("t.toml", text.as_bytes()) {
            proptest::prop_assert!(e.line >= 1 && e.column >= 1);
            proptest::prop_assert!(e.to_string().starts_with("t.toml:"));
        }
    }
}

#[test]
fn disclosure_periods_are_checked_against_the_law() {
    let text = MINI.replace(
        "restorable = false",
        "restorable = true\ndisclosure = { ordinary = 24 }",
    );
    let e = parse_err(&text);
    assert!(
        e.contains("items[0].disclosure.ordinary") && e.contains("3 to 12 months"),
        "{e}"
    );
    let ok = MINI.replace(
        "restorable = false",
        "restorable = true\ndisclosure = { ordinary = 6, serious = 36 }",
    );
    let c = Catalog::parse("t.toml", ok.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let d = time::macros::date!(2026 - 04 - 01);
    assert_eq!(
        c.items[0].disclosure_end(d, Severity::Ordinary),
        Some(time::macros::date!(2026 - 10 - 01))
    );
    assert_eq!(c.items[0].disclosure_end(d, Severity::Minor), None);
}

#[test]
fn explain_renders_text_and_json() {
    let c = demo();
    let caller = crate::identity::SpiffeId::parse("spiffe://region-b.credit.test/dept/tax")
        .unwrap_or_else(|e| panic!("{e}"));
    let e = explain(&c, &caller, "tax-administration");
    let text = e.to_string();
    assert!(
        text.contains("legal_rep_id") && text.contains("pseudonym"),
        "{text}"
    );
    assert!(
        text.contains("not shared") && text.contains("purpose not granted"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap_or_default();
    assert_eq!(json["purpose"], "tax-administration");
    assert!(
        json["rows"]
            .as_array()
            .is_some_and(|r| r.len() == e.rows.len())
    );
    // Columns line up: every row's DECISION column starts at the same place (all ASCII before).
    let starts: std::collections::BTreeSet<usize> = text
        .lines()
        .filter_map(|l| match (l.find(" granted "), l.find(" withheld ")) {
            (Some(g), Some(w)) => Some(g.min(w)),
            (g, w) => g.or(w),
        })
        .collect();
    assert_eq!(starts.len(), 1, "{text}");
}

#[test]
fn unsigned_bytes_never_become_a_signed_catalog() {
    let pair = AuthorityKeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let err = SignedCatalog::verify_and_parse("demo.toml", DEMO.as_bytes(), "", &pair.public_key());
    assert!(matches!(
        err,
        Err(CatalogError::Signature {
            reason: SignatureError::Malformed,
            ..
        })
    ));
    // A validly signed but malformed catalog is still refused, by the parser.
    let bad = signed_err("format = 1\n");
    assert!(bad.contains("t.toml:"), "{bad}");
}

fn signed_err(text: &str) -> String {
    let pair = AuthorityKeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let sig = pair.sign(text.as_bytes());
    match SignedCatalog::verify_and_parse("t.toml", text.as_bytes(), &sig, &pair.public_key()) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn signed_helper_works() {
    let _ = signed("t.toml", MINI);
}

/// Key files interoperate with OpenSSL both ways; skipped where no `openssl` binary exists.
#[test]
fn key_files_interoperate_with_openssl() {
    use std::process::Command;
    let openssl = |args: &[&str]| Command::new("openssl").args(args).output();
    if openssl(&["version"]).is_err() {
        eprintln!("openssl not installed: skipped");
        return;
    }
    let dir = std::env::temp_dir().join(format!("credit-core-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = |n: &str| dir.join(n).display().to_string();
    keyfiles::generate_key_files(&dir.join("key.pem"), &dir.join("pub.pem"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        keyfiles::generate_key_files(&dir.join("key.pem"), &dir.join("pub2.pem")).is_err(),
        "a private key is never overwritten"
    );
    let ok = |args: &[&str]| {
        let out = openssl(args).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(&["pkey", "-in", &path("key.pem"), "-noout"]);
    ok(&["pkey", "-pubin", "-in", &path("pub.pem"), "-noout"]);

    // Our signature verifies with OpenSSL.
    std::fs::write(dir.join("c.toml"), DEMO).unwrap_or_else(|e| panic!("{e}"));
    keyfiles::sign_file(
        &dir.join("c.toml"),
        &dir.join("key.pem"),
        &dir.join("c.toml.sig"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let hex = std::fs::read_to_string(dir.join("c.toml.sig")).unwrap_or_default();
    let bin: Vec<u8> = (0..128)
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    std::fs::write(dir.join("sig.bin"), bin).unwrap_or_else(|e| panic!("{e}"));
    ok(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        &path("pub.pem"),
        "-rawin",
        "-in",
        &path("c.toml"),
        "-sigfile",
        &path("sig.bin"),
    ]);
    let loaded = SignedCatalog::load(
        &dir.join("c.toml"),
        &dir.join("c.toml.sig"),
        &dir.join("pub.pem"),
    );
    assert!(loaded.is_ok(), "{loaded:?}");

    // An OpenSSL-made key (PKCS#8 v1) signs catalogs we accept with its OpenSSL-made public key.
    ok(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        &path("ossl.pem"),
    ]);
    ok(&[
        "pkey",
        "-in",
        &path("ossl.pem"),
        "-pubout",
        "-out",
        &path("ossl.pub"),
    ]);
    let pair = AuthorityKeyPair::from_pem(
        &std::fs::read_to_string(dir.join("ossl.pem")).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let public = AuthorityPublicKey::from_pem(
        &std::fs::read_to_string(dir.join("ossl.pub")).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pair.public_key(), public);
    let sig = pair.sign(DEMO.as_bytes());
    assert!(SignedCatalog::verify_and_parse("c.toml", DEMO.as_bytes(), &sig, &public).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
