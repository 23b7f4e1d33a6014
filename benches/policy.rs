//! Policy decision + de-sensitization of a typical record (12 fields, 4 personal) against
//! merely cloning that record, in the same run. Goal: < 5 µs per record.

use std::hint::black_box;
use std::time::Duration;

use credit_node::catalog::{AuthorityKeyPair, SignedCatalog};
use credit_node::desensitize::RecipientKey;
use credit_node::identity::SpiffeId;
use credit_node::policy::{ItemRequest, decide};
use criterion::{Criterion, criterion_group, criterion_main};

const CATALOG: &str = r#"format = 1
authority = "bench"
version = "1"
date = 2026-04-01

[[purposes]]
id = "tax-administration"
description = "tax"

[[items]]
id = "registration"
name = "市场主体登记注册信息"
category = "登记注册"
legal_basis = "bench"
source = "samr"
subject = "legal_person"
restorable = false
sharing = "conditional"
fields = [
  { name = "uscc", type = "uscc" },
  { name = "name", type = "string" },
  { name = "status", type = "string" },
  { name = "established", type = "date" },
  { name = "registered_capital", type = "amount" },
  { name = "division", type = "division_code" },
  { name = "business_scope", type = "text" },
  { name = "authority", type = "string" },
  { name = "legal_rep_name", type = "string", personal = true, form = "chinese_name" },
  { name = "legal_rep_id", type = "resident_id", personal = true, form = "resident_id" },
  { name = "legal_rep_mobile", type = "mobile", personal = true, form = "mobile" },
  { name = "contact_id", type = "resident_id", personal = true, form = "pseudonym" },
]

[[items.grants]]
trust_domains = ["region-a.credit.test", "region-b.credit.test"]
departments = ["tax"]
purposes = ["tax-administration"]
fields = ["uscc", "name", "status", "established", "registered_capital", "division", "business_scope", "authority", "legal_rep_name", "legal_rep_id", "legal_rep_mobile", "contact_id"]
"#;

fn record() -> Vec<(String, String)> {
    [
        ("uscc", "91330100716105852F"),
        ("name", "杭州某某网络科技有限公司"),
        ("status", "存续"),
        ("established", "2009-03-17"),
        ("registered_capital", "1500000.00"),
        ("division", "330106"),
        (
            "business_scope",
            "技术开发、技术服务、技术咨询、成果转让；计算机软硬件销售",
        ),
        ("authority", "杭州市市场监督管理局"),
        ("legal_rep_name", "欧阳娜娜"),
        ("legal_rep_id", "11010519491231002X"),
        ("legal_rep_mobile", "13812341234"),
        ("contact_id", "110105194912310029"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn bench(c: &mut Criterion) {
    let pair = AuthorityKeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let sig = pair.sign(CATALOG.as_bytes());
    let catalog =
        SignedCatalog::verify_and_parse("bench.toml", CATALOG.as_bytes(), &sig, &pair.public_key())
            .unwrap_or_else(|e| panic!("{e}"));
    let caller =
        SpiffeId::parse("spiffe://region-b.credit.test/dept/tax").unwrap_or_else(|e| panic!("{e}"));
    let master = [42u8; 32];
    let key = RecipientKey::derive(&master, &caller);
    let record = record();
    let request = [ItemRequest::all("registration")];

    let mut g = c.benchmark_group("record");
    g.bench_function("clone_record", |b| b.iter(|| black_box(&record).clone()));
    g.bench_function("decide_only", |b| {
        b.iter(|| decide(black_box(&catalog), &caller, "tax-administration", &request))
    });
    g.bench_function("decide_and_disclose", |b| {
        b.iter(|| {
            let d = decide(black_box(&catalog), &caller, "tax-administration", &request);
            let out = d
                .disclose("registration", black_box(&record), &key)
                .map(|o| o.fields.len());
            black_box(out)
        })
    });
    g.bench_function("decide_and_disclose_with_key_derivation", |b| {
        b.iter(|| {
            let key = RecipientKey::derive(&master, &caller);
            let d = decide(black_box(&catalog), &caller, "tax-administration", &request);
            let out = d
                .disclose("registration", black_box(&record), &key)
                .map(|o| o.fields.len());
            black_box(out)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
