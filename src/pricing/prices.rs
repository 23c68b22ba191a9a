//! A gateway's prices, read once from its `spec.pricing` and the PriceList it references, and
//! the entry that prices a model: its own name, a dated snapshot of a name
//! (`gpt-4o-mini-2024-07-18` finds `gpt-4o-mini`), or a prefix ending in `*`; the most
//! specific wins.

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::api::{BatchMode, InvalidField, ModelPrice, PriceListSpec, Pricing};

/// Every price a gateway's Batches are costed with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prices {
    /// ISO 4217 code of every price and cost.
    pub currency: String,
    /// Of the list price, what batch mode pays less, as a fraction (0.5 for `50%`).
    pub batch_discount: Decimal,
    /// The output tokens an estimate counts for a request without an output ceiling.
    pub default_max_output: Option<u64>,
    /// By `model` key: inline entries replace the PriceList's.
    entries: BTreeMap<String, Entry>,
    /// Why some prices are missing (a PriceList not found, in another currency): said in the
    /// `Priced` condition.
    pub notes: Vec<String>,
}

/// One model's prices, per million tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry's `model`, as written (`gpt-4o-mini`, `gpt-4o*`).
    pub model: String,
    /// Where it was written: `spec.pricing` or `PriceList <name>`.
    pub from: String,
    pub input: Decimal,
    pub cached_input: Decimal,
    pub output: Decimal,
}

/// The PriceList a gateway's pricing references, as its driver found it.
#[derive(Clone, Copy, Debug)]
pub enum PriceListLookup<'a> {
    /// `spec.pricing.priceListRef` is not set.
    NotReferenced,
    Found(&'a PriceListSpec),
    /// Referenced and not there.
    Missing,
}

impl Prices {
    /// The prices of `pricing` and its PriceList (inline entries first). A price or percentage
    /// that is not a decimal is an error naming the field; a missing PriceList, or one in
    /// another currency, only leaves its models unpriced (and says so in `notes`).
    pub fn new(pricing: &Pricing, list: PriceListLookup<'_>) -> Result<Prices, InvalidField> {
        let mut prices = Prices {
            currency: pricing.currency.clone(),
            batch_discount: percentage("spec.pricing.batchDiscount", &pricing.batch_discount)?,
            default_max_output: pricing.default_max_output_tokens,
            entries: BTreeMap::new(),
            notes: Vec::new(),
        };
        let name = pricing
            .price_list_ref
            .as_ref()
            .map(|r| r.name.as_str())
            .unwrap_or_default();
        match list {
            PriceListLookup::NotReferenced => {}
            PriceListLookup::Missing => prices.notes.push(format!("PriceList {name} not found")),
            PriceListLookup::Found(list) if list.currency != pricing.currency => prices.notes.push(format!(
                "PriceList {name} prices in {}, the gateway in {}: not used",
                list.currency, pricing.currency
            )),
            PriceListLookup::Found(list) => {
                prices.add(&list.models, &format!("PriceList {name}"), "spec.pricing.priceListRef")?
            }
        }
        prices.add(&pricing.models, "spec.pricing", "spec.pricing.models")?;
        Ok(prices)
    }

    /// Prices that cannot be had at all (`why`): every model is unpriced.
    pub fn unavailable(currency: &str, why: impl Into<String>) -> Prices {
        Prices {
            currency: currency.to_string(),
            batch_discount: Decimal::ZERO,
            default_max_output: None,
            entries: BTreeMap::new(),
            notes: vec![why.into()],
        }
    }

    fn add(&mut self, models: &[ModelPrice], from: &str, field: &'static str) -> Result<(), InvalidField> {
        for price in models {
            let entry = Entry::parse(price, from).map_err(|problem| match from {
                "spec.pricing" => InvalidField::new(field, problem),
                list => InvalidField::new(field, format!("{list}: {problem}")),
            })?;
            self.entries.insert(price.model.clone(), entry);
        }
        Ok(())
    }

    /// The most specific entry pricing `model`: its exact name, then a name it is a dated
    /// snapshot of, then the longest `*` prefix it starts with.
    pub fn find(&self, model: &str) -> Option<&Entry> {
        self.entries
            .values()
            .filter_map(|entry| Some((specificity(&entry.model, model)?, entry)))
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, entry)| entry)
    }

    /// What one token-million of list price costs in `mode`: 1 less the batch discount in
    /// batch mode, 1 in direct mode.
    pub fn factor(&self, mode: BatchMode) -> Decimal {
        match mode {
            BatchMode::Batch => Decimal::ONE - self.batch_discount,
            BatchMode::Direct => Decimal::ONE,
        }
    }
}

impl Entry {
    fn parse(price: &ModelPrice, from: &str) -> Result<Entry, String> {
        let at = |what: &str, text: &str| format!("model {:?}: {what} {text:?} is not a price like 0.15", price.model);
        let amount = |what: &str, text: &str| decimal(text).ok_or_else(|| at(what, text));
        let input = amount("inputPerMillion", &price.input_per_million)?;
        let cached_input = match &price.cached_input_per_million {
            Some(text) => amount("cachedInputPerMillion", text)?,
            None => input,
        };
        if !is_model_key(&price.model) {
            return Err(format!(
                "model {:?} is not a model name or a prefix ending in *",
                price.model
            ));
        }
        Ok(Entry {
            model: price.model.clone(),
            from: from.to_string(),
            input,
            cached_input,
            output: amount("outputPerMillion", &price.output_per_million)?,
        })
    }

    /// `gpt-4o-mini (PriceList openai)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.model, self.from)
    }
}

/// How closely `key` (an entry's `model`) matches `model`, when it does: an exact name beats a
/// snapshot of the name, which beats a prefix; a longer prefix beats a shorter one.
fn specificity(key: &str, model: &str) -> Option<(u8, usize)> {
    if let Some(prefix) = key.strip_suffix('*') {
        return model.starts_with(prefix).then_some((1, prefix.len()));
    }
    if key == model {
        return Some((3, key.len()));
    }
    let suffix = model.strip_prefix(key)?.strip_prefix('-')?;
    is_snapshot(suffix).then_some((2, key.len()))
}

/// A dated snapshot's suffix: `2024-07-18` or `0613`.
fn is_snapshot(suffix: &str) -> bool {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    match suffix.split('-').collect::<Vec<_>>()[..] {
        [mmdd] => digits(mmdd, 4),
        [year, month, day] => digits(year, 4) && digits(month, 2) && digits(day, 2),
        _ => false,
    }
}

/// What the CRD's pattern accepts (`api::MODEL_PATTERN`), checked here for `run -f`.
fn is_model_key(key: &str) -> bool {
    let name = key.strip_suffix('*').unwrap_or(key);
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._:/@+-".contains(c);
    key.len() <= 128 && name.starts_with(|c: char| c.is_ascii_alphanumeric()) && name.chars().all(allowed)
}

/// A price as the CRD's pattern has it (`api::PRICE_PATTERN`): up to 6 digits, and up to 9
/// after a point.
pub fn decimal(text: &str) -> Option<Decimal> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "1"));
    let digits = |s: &str, max: usize| (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    (digits(whole, 6) && digits(fraction, 9))
        .then(|| Decimal::from_str(text).ok())
        .flatten()
}

/// `50%` as the fraction 0.5; at most 100%.
fn percentage(field: &'static str, text: &str) -> Result<Decimal, InvalidField> {
    let value = text
        .strip_suffix('%')
        .and_then(decimal)
        .filter(|v| *v <= Decimal::ONE_HUNDRED);
    value
        .map(|v| v / Decimal::ONE_HUNDRED)
        .ok_or_else(|| InvalidField::new(field, format!("{text:?} is not a percentage from 0% to 100%, like 50%")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PriceListRef;

    pub(crate) fn price(model: &str, input: &str, cached: Option<&str>, output: &str) -> ModelPrice {
        ModelPrice {
            model: model.to_string(),
            input_per_million: input.to_string(),
            cached_input_per_million: cached.map(str::to_string),
            output_per_million: output.to_string(),
        }
    }

    fn inline(models: Vec<ModelPrice>) -> Pricing {
        Pricing {
            models,
            ..Default::default()
        }
    }

    fn found<'a>(prices: &'a Prices, model: &str) -> Option<&'a str> {
        prices.find(model).map(|e| e.model.as_str())
    }

    #[test]
    fn exact_names_snapshots_and_prefixes_match() {
        let prices = Prices::new(
            &inline(vec![
                price("gpt-4o", "2.5", None, "10"),
                price("gpt-4o-mini", "0.15", None, "0.6"),
                price("gpt-4*", "30", None, "60"),
                price("o*", "1", None, "1"),
            ]),
            PriceListLookup::NotReferenced,
        )
        .unwrap();
        assert_eq!(found(&prices, "gpt-4o-mini"), Some("gpt-4o-mini"));
        assert_eq!(found(&prices, "gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini"));
        assert_eq!(found(&prices, "gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(found(&prices, "gpt-4-0613"), Some("gpt-4*"));
        // Not a snapshot of gpt-4o: a variant the list does not name is priced by the prefix.
        assert_eq!(found(&prices, "gpt-4o-audio-preview"), Some("gpt-4*"));
        assert_eq!(found(&prices, "o3-mini"), Some("o*"));
        assert_eq!(found(&prices, "text-embedding-3-small"), None);
        assert_eq!(found(&prices, "gpt-4o-mini-2024-07"), Some("gpt-4*"), "not a date");
    }

    #[test]
    fn the_most_specific_entry_wins() {
        let prices = Prices::new(
            &inline(vec![
                price("gpt*", "9", None, "9"),
                price("gpt-4o*", "5", None, "5"),
                price("gpt-4o-mini*", "1", None, "1"),
                price("gpt-4o-mini", "0.15", None, "0.6"),
            ]),
            PriceListLookup::NotReferenced,
        )
        .unwrap();
        assert_eq!(found(&prices, "gpt-4o-mini"), Some("gpt-4o-mini"));
        assert_eq!(found(&prices, "gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini"));
        assert_eq!(found(&prices, "gpt-4o-mini-tts"), Some("gpt-4o-mini*"));
        assert_eq!(found(&prices, "gpt-4o-x"), Some("gpt-4o*"));
        assert_eq!(found(&prices, "gpt-3.5-turbo"), Some("gpt*"));
    }

    #[test]
    fn inline_entries_replace_the_price_lists() {
        let list = PriceListSpec {
            currency: "USD".into(),
            source: None,
            models: vec![price("a", "1", None, "2"), price("b", "3", None, "4")],
        };
        let pricing = Pricing {
            price_list_ref: Some(PriceListRef { name: "shared".into() }),
            ..inline(vec![price("b", "30", Some("15"), "40")])
        };
        let prices = Prices::new(&pricing, PriceListLookup::Found(&list)).unwrap();
        let (a, b) = (prices.find("a").unwrap(), prices.find("b").unwrap());
        assert_eq!(
            (a.input, a.cached_input, a.from.as_str()),
            (1.into(), 1.into(), "PriceList shared")
        );
        assert_eq!(
            (b.input, b.cached_input, b.from.as_str()),
            (30.into(), 15.into(), "spec.pricing")
        );
        assert!(prices.notes.is_empty());

        let missing = Prices::new(&pricing, PriceListLookup::Missing).unwrap();
        assert_eq!(missing.notes, ["PriceList shared not found"]);
        assert!(missing.find("a").is_none() && missing.find("b").is_some());
        let euros = PriceListSpec {
            currency: "EUR".into(),
            ..list
        };
        let other = Prices::new(&pricing, PriceListLookup::Found(&euros)).unwrap();
        assert!(
            other.notes[0].contains("prices in EUR, the gateway in USD"),
            "{:?}",
            other.notes
        );
        assert!(other.find("a").is_none());
    }

    #[test]
    fn malformed_prices_name_their_field() {
        for (bad, field) in [
            (price("m", "1,5", None, "1"), "inputPerMillion \"1,5\""),
            (price("m", "1", Some("-1"), "1"), "cachedInputPerMillion \"-1\""),
            (price("m", "1", None, "1e3"), "outputPerMillion \"1e3\""),
            (price("m", "1", None, ".5"), "outputPerMillion \".5\""),
            (price("m", "1", None, "1234567"), "outputPerMillion"),
            (price("m*x", "1", None, "1"), "not a model name"),
        ] {
            let err = Prices::new(&inline(vec![bad]), PriceListLookup::NotReferenced).unwrap_err();
            assert_eq!(err.field, "spec.pricing.models");
            assert!(err.problem.contains(field), "{err}");
        }
        for bad in ["150%", "50", "-5%", "abc%"] {
            let pricing = Pricing {
                batch_discount: bad.into(),
                ..inline(vec![price("m", "1", None, "1")])
            };
            let err = Prices::new(&pricing, PriceListLookup::NotReferenced).unwrap_err();
            assert_eq!(err.field, "spec.pricing.batchDiscount", "{bad}");
        }
    }

    #[test]
    fn the_discount_applies_to_batch_mode_only() {
        let prices = Prices::new(&inline(vec![]), PriceListLookup::NotReferenced).unwrap();
        assert_eq!(prices.factor(BatchMode::Batch), Decimal::new(5, 1));
        assert_eq!(prices.factor(BatchMode::Direct), Decimal::ONE);
        let pricing = Pricing {
            batch_discount: "12.5%".into(),
            ..inline(vec![])
        };
        let prices = Prices::new(&pricing, PriceListLookup::NotReferenced).unwrap();
        assert_eq!(prices.factor(BatchMode::Batch), Decimal::new(875, 3));
    }
}
