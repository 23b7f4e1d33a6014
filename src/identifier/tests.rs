use super::*;
use proptest::prelude::*;

fn err(s: &str) -> String {
    match Subject::parse(s) {
        Ok(v) => panic!("{s} accepted as {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn known_good_codes() {
    assert_eq!(
        ResidentId::parse("11010519491231002X").map(|r| r.to_string()),
        Ok("11010519491231002X".into())
    );
    assert_eq!(
        ResidentId::parse("11010519491231002x").map(|r| r.to_string()),
        Ok("11010519491231002X".into())
    );
    // A real, published code (Alibaba (China) Co., Ltd.'s is 91330100716105852F).
    assert!(Uscc::parse("91330100716105852F").is_ok());
    assert!(matches!(
        Subject::parse("91330100716105852F"),
        Ok(Subject::LegalPerson(_))
    ));
    assert!(matches!(
        Subject::parse("11010519491231002X"),
        Ok(Subject::NaturalPerson(_))
    ));
}

#[test]
fn precise_errors() {
    assert_eq!(
        Uscc::parse("9133010071610585").map_err(|e| e.to_string()),
        Err("unified social credit code: wrong length (expected 18, got 16)".into())
    );
    assert_eq!(
        Uscc::parse("9133I100716105852F").map_err(|e| e.to_string()),
        Err("unified social credit code: invalid character 'I' at position 5".into())
    );
    assert_eq!(
        Uscc::parse("913301007161058523").map_err(|e| e.to_string()),
        Err("unified social credit code: check character expected 'F' found '3'".into())
    );
    assert_eq!(
        ResidentId::parse("110105194912310023").map_err(|e| e.to_string()),
        Err("resident identity number: check character expected 'X' found '3'".into())
    );
    assert_eq!(
        ResidentId::parse("11010519491331002X").map_err(|e| e.to_string()),
        Err(
            "resident identity number: characters 7-14 are not a real birth date (YYYYMMDD)".into()
        )
    );
    assert_eq!(
        ResidentId::parse("11010519490229002X").map_err(|e| e.to_string()),
        Err(
            "resident identity number: characters 7-14 are not a real birth date (YYYYMMDD)".into()
        )
    );
    // By chance this bad resident number is a valid USCC: shape alone cannot tell, which is why
    // requests state the subject type where they can.
    assert!(matches!(
        Subject::parse("11010519491331002X"),
        Ok(Subject::LegalPerson(_))
    ));
    assert_eq!(
        err("11010519491332002X"),
        "resident identity number: characters 7-14 are not a real birth date (YYYYMMDD)"
    );
    assert_eq!(
        err("9133010071610585"),
        "unified social credit code: wrong length (expected 18, got 16)"
    );
    assert_eq!(
        err("91330100716105852F张"),
        "unified social credit code: wrong length (expected 18, got 19)"
    );
    assert_eq!(
        err("9133010071610585张F"),
        "unified social credit code: invalid character '张' at position 17"
    );
    assert!(
        Uscc::parse("91330100716105852f").is_err(),
        "lower-case USCC is refused"
    );
}

#[test]
fn future_birth_dates_are_refused_against_the_given_day() {
    let id = ResidentId::from_seed(7);
    let birth = id.birth_date();
    assert!(ResidentId::parse_as_of(id.as_str(), birth).is_ok());
    let before = birth.previous_day().unwrap_or(birth);
    assert!(ResidentId::parse_as_of(id.as_str(), before).is_err());
}

#[test]
fn ambiguous_codes_are_refused_not_guessed() {
    let both = (0..20_000u64)
        .map(ResidentId::from_seed)
        .find(|r| Uscc::parse(r.as_str()).is_ok());
    let Some(both) = both else {
        panic!("no ambiguous code in 20000 draws")
    };
    assert_eq!(
        Subject::parse(both.as_str()),
        Err(IdentifierError::Ambiguous)
    );
}

#[test]
fn debug_does_not_print_the_identifier() {
    let id = ResidentId::from_seed(1);
    let dbg = format!("{id:?} {:?}", Subject::NaturalPerson(id));
    assert!(!dbg.contains(&id.as_str()[..14]), "{dbg}");
}

/// Every single-character substitution of a valid code, except the accepted `X` -> `x` spelling.
fn mutations(code: &str) -> impl Iterator<Item = String> + '_ {
    let alphabet: Vec<char> = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZxa张".chars().collect();
    (0..18).flat_map(move |i| {
        let alphabet = alphabet.clone();
        alphabet.into_iter().filter_map(move |c| {
            let mut chars: Vec<char> = code.chars().collect();
            if chars[i] == c || (chars[i] == 'X' && c == 'x') {
                return None;
            }
            chars[i] = c;
            Some(chars.into_iter().collect())
        })
    })
}

proptest! {
    #[test]
    fn generated_uscc_valid_and_single_changes_refused(seed in any::<u64>()) {
        let code = Uscc::from_seed(seed);
        prop_assert_eq!(Uscc::parse(code.as_str()), Ok(code));
        for m in mutations(code.as_str()) {
            prop_assert!(Uscc::parse(&m).is_err(), "{} accepted", m);
        }
    }

    #[test]
    fn generated_resident_id_valid_and_single_changes_refused(seed in any::<u64>()) {
        let id = ResidentId::from_seed(seed);
        prop_assert_eq!(ResidentId::parse(id.as_str()), Ok(id));
        for m in mutations(id.as_str()) {
            prop_assert!(ResidentId::parse(&m).is_err(), "{} accepted", m);
        }
    }

    #[test]
    fn parsers_never_panic(s in "\\PC{0,24}") {
        let _ = Subject::parse(&s);
        let _ = Uscc::parse(&s);
        let _ = ResidentId::parse(&s);
    }
}
