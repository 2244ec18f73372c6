//! How a SKU's usage aggregates over a period into the quantity its price
//! book charges for. Every rule is order-independent, so a statement never
//! depends on arrival order or batch boundaries.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregationError {
    #[error("unknown aggregation {0:?}: expected sum, count, max, latest or unique_count")]
    Unknown(String),
    #[error("unique_count needs the name of the dimension whose distinct values it counts")]
    DimensionRequired,
    #[error("only unique_count takes a dimension")]
    DimensionNotAllowed,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "aggregation", content = "dimension", rename_all = "snake_case")]
pub enum Aggregation {
    /// The sum of the events' quantities (the default).
    Sum,
    /// The number of events.
    Count,
    /// The largest quantity of any event.
    Max,
    /// The quantity of the latest event (by event time, then event id).
    Latest,
    /// The number of distinct values of the named dimension.
    UniqueCount(String),
}

impl Aggregation {
    pub fn parse(kind: &str, dimension: Option<&str>) -> Result<Self, AggregationError> {
        let dimension = dimension.map(str::trim).filter(|d| !d.is_empty());
        let aggregation = match kind {
            "sum" => Aggregation::Sum,
            "count" => Aggregation::Count,
            "max" => Aggregation::Max,
            "latest" => Aggregation::Latest,
            "unique_count" => {
                return dimension
                    .map(|d| Aggregation::UniqueCount(d.to_owned()))
                    .ok_or(AggregationError::DimensionRequired)
            }
            other => return Err(AggregationError::Unknown(other.to_owned())),
        };
        match dimension {
            Some(_) => Err(AggregationError::DimensionNotAllowed),
            None => Ok(aggregation),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Aggregation::Sum => "sum",
            Aggregation::Count => "count",
            Aggregation::Max => "max",
            Aggregation::Latest => "latest",
            Aggregation::UniqueCount(_) => "unique_count",
        }
    }

    pub fn dimension(&self) -> Option<&str> {
        match self {
            Aggregation::UniqueCount(d) => Some(d),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_aggregation_and_checks_the_dimension() {
        assert_eq!(Aggregation::parse("sum", None), Ok(Aggregation::Sum));
        assert_eq!(Aggregation::parse("latest", None), Ok(Aggregation::Latest));
        assert_eq!(
            Aggregation::parse("unique_count", Some("user")),
            Ok(Aggregation::UniqueCount("user".into()))
        );
        assert_eq!(
            Aggregation::parse("unique_count", None),
            Err(AggregationError::DimensionRequired)
        );
        assert_eq!(
            Aggregation::parse("max", Some("x")),
            Err(AggregationError::DimensionNotAllowed)
        );
        assert!(matches!(
            Aggregation::parse("avg", None),
            Err(AggregationError::Unknown(_))
        ));
    }
}
