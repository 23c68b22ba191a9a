//! A gateway's prices when a Batch's input is estimated and when its results are counted: its
//! `spec.pricing`, and the cluster-scoped PriceList it references, read with one GET at those
//! moments only (never watched: a PriceList changes rarely and is read twice per Batch).

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;

use crate::api::{BatchGateway, PriceList};
use crate::pricing::{PriceListLookup, Prices};

/// The prices of `gateway` (`None` without `spec.pricing`). Prices that cannot be had (the
/// PriceList unreadable, a malformed price) leave every model unpriced and say why: the
/// results are never held back for a price.
pub async fn resolve(client: &kube::Client, gateway: &BatchGateway) -> Option<Arc<Prices>> {
    let pricing = gateway.spec.pricing.as_ref()?;
    let fetched = match &pricing.price_list_ref {
        None => Ok(None),
        Some(r) => Api::<PriceList>::all(client.clone()).get_opt(&r.name).await.map(Some),
    };
    let prices = match &fetched {
        Ok(None) => Prices::new(pricing, PriceListLookup::NotReferenced),
        Ok(Some(None)) => Prices::new(pricing, PriceListLookup::Missing),
        Ok(Some(Some(list))) => Prices::new(pricing, PriceListLookup::Found(&list.spec)),
        Err(e) => {
            let name = pricing
                .price_list_ref
                .as_ref()
                .map(|r| r.name.as_str())
                .unwrap_or_default();
            return Some(Arc::new(Prices::unavailable(
                &pricing.currency,
                format!("PriceList {name} could not be read: {e}"),
            )));
        }
    };
    let ns = gateway.namespace().unwrap_or_default();
    Some(Arc::new(prices.unwrap_or_else(|e| {
        Prices::unavailable(
            &pricing.currency,
            format!("BatchGateway {ns}/{}: {e}", gateway.name_any()),
        )
    })))
}
