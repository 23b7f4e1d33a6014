use super::*;
use crate::identity::SpiffeId;
use proptest::prelude::*;

fn key(recipient: &str) -> RecipientKey {
    let id = SpiffeId::parse(recipient).unwrap_or_else(|e| panic!("{e}"));
    RecipientKey::derive(&[7u8; 32], &id)
}

fn check(form: &str, value: &str, expected: Result<&str, ()>) {
    let rule: Rule = form.parse().unwrap_or_else(|e| panic!("{e}"));
    let got = rule.apply(value, &key("spiffe://region-a.credit.test/dept/tax"));
    match (got, expected) {
        (Ok(Applied::Value(v)), Ok(e)) => assert_eq!(v, e, "{form} on {value:?}"),
        (Ok(Applied::Suppressed), Ok(e)) => assert_eq!("<suppressed>", e, "{form} on {value:?}"),
        (Err(_), Err(())) => {}
        (got, expected) => panic!("{form} on {value:?}: got {got:?}, expected {expected:?}"),
    }
}

#[test]
fn masks() {
    check("mask(3,4)", "13812341234", Ok("138****1234"));
    check("mask(1,1)", "11010519491231002X", Ok("1****************X"));
    check("mask(2,2)", "abcd", Ok("****"));
    check("mask(2,2)", "abc", Ok("***"));
    check("mask(0,0)", "", Ok(""));
    // U+20BB7 (𠮷) is outside the BMP: one character, one star, never split.
    check("mask(1,0)", "𠮷野家", Ok("𠮷**"));
    check("mask(0,1)", "吉𠮷", Ok("*𠮷"));
    check("mask(1,1)", "𠮷", Ok("*"));
    check(
        "resident_id",
        "11010519491231002X",
        Ok("1****************X"),
    );
}

#[test]
fn presets() {
    check("chinese_name", "张三", Ok("张*"));
    check("chinese_name", "张三丰", Ok("张**"));
    check("chinese_name", "欧阳娜娜", Ok("欧阳**"));
    check("chinese_name", "诸葛亮", Ok("诸葛*"));
    check("chinese_name", "欧阳", Ok("**"));
    check("chinese_name", "李", Ok("*"));
    check("chinese_name", "𠮷田", Ok("𠮷*"));
    check("chinese_name", "John Smith", Ok("**********"));
    check("chinese_name", "买买提·艾力", Ok("买*****"));
    check("mobile", "13812341234", Ok("138****1234"));
    check("mobile", "12812341234", Ok("***********"));
    check("mobile", "1381234123", Ok("**********"));
    check("mobile", "+8613812341234", Ok("**************"));
    check("mobile", "１３８１２３４１２３４", Ok("***********"));
    check("address", "北京市朝阳区建国路88号", Ok("北京市朝阳区"));
    check(
        "address",
        "广东省深圳市南山区科技园南区1栋",
        Ok("广东省深圳市南山区"),
    );
    check(
        "address",
        "新疆维吾尔自治区乌鲁木齐市天山区解放南路1号",
        Ok("新疆维吾尔自治区乌鲁木齐市天山区"),
    );
    check(
        "address",
        "内蒙古自治区呼伦贝尔市鄂温克族自治旗巴彦托海镇",
        Ok("内蒙古自治区呼伦贝尔市鄂温克族自治旗"),
    );
    check(
        "address",
        "河北省保定市涞水县城关镇1号",
        Ok("河北省保定市涞水县"),
    );
    check("address", "上海浦东新区张江路1号", Ok("上海浦东新区"));
    check(
        "address",
        "广东省东莞市南城街道工业区3号",
        Ok("***************"),
    );
    check("address", "建国路88号", Ok("******"));
    check("address", "", Ok(""));
}

/// The address rule fails closed: a 区 that does not end a district name (小区, 社区, 园区,
/// 开发区 …) is no place to cut, and the value is masked whole rather than cut below the
/// district or returned as it is.
#[test]
fn address_is_cut_only_at_a_district() {
    for (value, expected) in [
        ("北京市朝阳区望京社区居委会", "北京市朝阳区"),
        ("山东省青岛市市南区香港中路8号", "山东省青岛市市南区"),
        ("上海市浦东新区张江路1号", "上海市浦东新区"),
        ("重庆渝中区解放碑", "重庆渝中区"),
        ("浙江省杭州市西湖区文三路", "浙江省杭州市西湖区"),
        ("北京市海淀区", "北京市海淀区"),
    ] {
        check("address", value, Ok(expected));
    }
    for value in [
        // 东莞 has no districts: what follows the city is below them.
        "东莞市阳光小区5栋301",
        "东莞市万科城市花园小区",
        "东莞市松山湖高新区",
        "东莞市红旗小区3栋",
        "广东省东莞市长安镇",
        // No city: a district cannot be told from a neighbourhood.
        "望京社区居委会",
        "朝阳区建国路88号",
        "江苏省苏州工业园区星湖街328号",
        "深圳市南山科技园区",
        "广州市天河区域",
        "上海市3区5号",
        "上海市ABC区",
        "河北省涞水县城关镇",
    ] {
        let stars = "*".repeat(value.chars().count());
        check("address", value, Ok(&stars));
    }
}

#[test]
fn generalise_and_suppress() {
    check("generalise(year)", "2024-02-29", Ok("2024"));
    check("generalise(month)", "2024-02-29", Ok("2024-02"));
    check("generalise(year)", "2023-02-29", Err(()));
    check("generalise(year)", "20240229", Err(()));
    check("generalise(year)", "张三", Err(()));
    check("generalise(amount,10000)", "15000", Ok("10000-20000"));
    check("generalise(amount,10000)", "9999.99", Ok("0-10000"));
    check("generalise(amount,10000)", "-5", Err(()));
    check("generalise(amount,10000)", "1e5", Err(()));
    check("generalise(amount,10)", "18446744073709551615", Err(()));
    check("generalise(province)", "110105", Ok("110000"));
    check("generalise(city)", "440305", Ok("440300"));
    check("generalise(city)", "44030", Err(()));
    check("suppress", "anything", Ok("<suppressed>"));
}

#[test]
fn errors_never_carry_the_value() {
    let rule: Rule = "generalise(year)".parse().unwrap_or(Rule::Suppress);
    let err = rule.apply(
        "11010519491231002X",
        &key("spiffe://region-a.credit.test/dept/tax"),
    );
    let text = format!(
        "{err:?} {}",
        err.as_ref()
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
    );
    assert!(!text.contains("1101051949"), "{text}");
}

#[test]
fn form_syntax_round_trips() {
    for text in [
        "raw",
        "mask(3,4)",
        "pseudonym",
        "suppress",
        "generalise(year)",
        "generalise(month)",
        "generalise(amount,10000)",
        "generalise(province)",
        "generalise(city)",
        "resident_id",
        "chinese_name",
        "mobile",
        "address",
    ] {
        let form: Form = text.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(form.to_string(), text);
    }
    assert_eq!(
        "mask( 3 , 4 )".parse::<Form>().map(|f| f.to_string()),
        Ok("mask(3,4)".into())
    );
    for bad in [
        "",
        "Raw",
        "mask",
        "mask(3)",
        "mask(a,b)",
        "mask(3,4",
        "generalise(day)",
        "pseudonym(1)",
        "hash",
        "generalise(amount,0)",
    ] {
        assert!(bad.parse::<Form>().is_err(), "{bad} accepted");
    }
}

#[test]
fn pseudonym_shape() {
    let Ok(Applied::Value(p)) =
        Rule::Pseudonym.apply("x", &key("spiffe://region-a.credit.test/dept/tax"))
    else {
        panic!("no pseudonym")
    };
    assert_eq!(p.len(), 34);
    assert!(
        p.starts_with("p_")
            && p[2..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
}

fn any_rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        (0u16..6, 0u16..6).prop_map(|(keep_first, keep_last)| Rule::Mask {
            keep_first,
            keep_last
        }),
        Just(Rule::Pseudonym),
        Just(Rule::Suppress),
        Just(Rule::ResidentId),
        Just(Rule::ChineseName),
        Just(Rule::Mobile),
        Just(Rule::Address),
        Just(Rule::Generalise(Generalise::Year)),
        Just(Rule::Generalise(Generalise::Month)),
        Just(Rule::Generalise(Generalise::Province)),
        Just(Rule::Generalise(Generalise::City)),
        (1u64..1_000_000).prop_map(|width| Rule::Generalise(Generalise::Amount { width })),
    ]
}

proptest! {
    /// Whatever the value, `address` returns it masked whole, or a prefix ending in 区/县/旗
    /// that is Chinese characters only: never the value cut at a guess.
    #[test]
    fn address_is_masked_whole_or_a_district(value in "\\PC{0,24}|[\\u{4e00}-\\u{4e50}区县旗市省州小社园路号0-9]{0,16}") {
        let got = Rule::Address.apply(&value, &key("spiffe://region-a.credit.test/dept/tax"));
        let Ok(Applied::Value(out)) = got else {
            panic!("address on {value:?}: {got:?}");
        };
        let masked = out.chars().all(|c| c == '*') && out.chars().count() == value.chars().count();
        let district = value.starts_with(&out)
            && out.ends_with(['区', '县', '旗'])
            && !out.ends_with("小区")
            && !out.ends_with("社区")
            && !out.ends_with("园区")
            && out.chars().all(|c| c.len_utf8() > 1);
        prop_assert!(masked || district, "{value:?} -> {out:?}");
    }

    #[test]
    fn no_rule_panics(rule in any_rule(), value in "\\PC{0,40}|[0-9.\\-]{0,12}|[\\u{4e00}-\\u{4e50}区县市省路]{0,16}") {
        let _ = rule.apply(&value, &key("spiffe://region-a.credit.test/dept/tax"));
    }

    #[test]
    fn masks_keep_length_and_hide_masked_positions(first in 0u16..5, last in 0u16..5, value in "\\PC{0,30}") {
        let rule = Rule::Mask { keep_first: first, keep_last: last };
        let Ok(Applied::Value(out)) = rule.apply(&value, &key("spiffe://region-a.credit.test/dept/tax")) else {
            return Err(TestCaseError::fail("mask failed"));
        };
        let input: Vec<char> = value.chars().collect();
        let output: Vec<char> = out.chars().collect();
        prop_assert_eq!(input.len(), output.len());
        let n = input.len();
        let (first, last) = (usize::from(first), usize::from(last));
        for i in 0..n {
            let kept = n > first + last && (i < first || i >= n - last);
            if kept {
                prop_assert_eq!(output[i], input[i]);
            } else {
                prop_assert_eq!(output[i], '*');
            }
        }
    }

    #[test]
    fn presets_never_return_the_raw_value(value in "\\PC{1,30}") {
        // A value of stars is its own mask; any other value must change.
        prop_assume!(!value.contains('*'));
        let k = key("spiffe://region-a.credit.test/dept/tax");
        for rule in [Rule::ResidentId, Rule::ChineseName, Rule::Mobile] {
            if let Ok(Applied::Value(out)) = rule.apply(&value, &k) {
                prop_assert_ne!(&out, &value);
                prop_assert_eq!(out.chars().count(), value.chars().count());
            }
        }
    }

    #[test]
    fn pseudonyms_stable_per_recipient_distinct_across(value in "\\PC{0,30}") {
        let a1 = key("spiffe://region-a.credit.test/dept/tax");
        let a2 = key("spiffe://region-a.credit.test/dept/tax");
        let b = key("spiffe://region-b.credit.test/dept/tax");
        let p = |k: &RecipientKey| Rule::Pseudonym.apply(&value, k);
        prop_assert_eq!(p(&a1), p(&a2));
        prop_assert_ne!(p(&a1), p(&b));
        prop_assert_ne!(p(&a1), Ok(Applied::Value(value.clone())));
    }
}

/// What a node checks of a value another node says it gave in a form: each rule's own output
/// passes, and the value in clear under that form's name does not.
#[test]
fn a_value_passes_as_formed_only_in_its_forms_shape() {
    let key = key("spiffe://region-a.credit.test/dept/tax");
    for (form, clear) in [
        ("mask(3,4)", "13812341234"),
        ("resident_id", "11010519491231002X"),
        ("chinese_name", "欧阳娜娜"),
        ("chinese_name", "王艳"),
        ("mobile", "13812341234"),
        ("mobile", "02188886666"),
        ("address", "浙江省杭州市西湖区文三路90号"),
        ("pseudonym", "11010519491231002X"),
        ("generalise(year)", "2009-03-17"),
        ("generalise(month)", "2009-03-17"),
        ("generalise(amount,10000)", "15000.00"),
        ("generalise(province)", "330106"),
        ("generalise(city)", "330106"),
    ] {
        let rule: Rule = form.parse().unwrap_or_else(|e| panic!("{e}"));
        let Ok(Applied::Value(formed)) = rule.apply(clear, &key) else {
            panic!("{form} applies to {clear}");
        };
        assert!(rule.could_have_given(&formed, &key), "{form}: {formed}");
        assert!(
            !rule.could_have_given(clear, &key),
            "{form}: {clear} in clear"
        );
    }
    let suppress: Rule = "suppress".parse().unwrap_or_else(|e| panic!("{e}"));
    assert!(!suppress.could_have_given("", &key));
    // One character more than a single surname keeps is not a Chinese-name form.
    let name: Rule = "chinese_name".parse().unwrap_or_else(|e| panic!("{e}"));
    assert!(!name.could_have_given("王小*", &key));
}
