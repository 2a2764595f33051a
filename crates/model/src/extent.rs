//! The extent of a multi-dimensional latitude or longitude coordinate: what an item
//! builder needs of a curvilinear grid (ocean and sea-ice models' 2-D `latitude` and
//! `longitude`) without keeping its values, which are as large as one field of data.

use serde::{Deserialize, Serialize};

/// Bins of one degree each around the globe.
const BINS: usize = 360;

/// Minimum and maximum of a coordinate's valid values, and which one-degree bins of
/// longitude (after wrapping into 0..360) hold at least one of them. The bins let a
/// longitude extent that crosses the antimeridian, or covers the globe, be told apart
/// from one that spans the same minimum and maximum in one piece.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridExtent {
    pub min: f64,
    pub max: f64,
    /// Bit `b % 64` of word `b / 64` is set when some value lies in `[b, b + 1)` degrees.
    pub degrees: [u64; 6],
}

/// The one-degree bin of longitude `v` (any convention) lies in.
fn bin_of(v: f64) -> usize {
    (v.rem_euclid(360.0) as usize).min(BINS - 1)
}

/// Coordinates beyond this are fill values of grids that mark land cells (1e20,
/// 9.96921e36), not positions.
const MAX_DEGREES: f64 = 720.0;

impl GridExtent {
    /// The extent of `values`, leaving out non-finite values, the ones equal to one of
    /// `fills` and the ones no coordinate in degrees can take; `None` when nothing is left.
    pub fn of(values: &[f64], fills: &[f64]) -> Option<Self> {
        let mut extent: Option<GridExtent> = None;
        for &v in values {
            if !v.is_finite() || v.abs() > MAX_DEGREES || fills.contains(&v) {
                continue;
            }
            let e = extent.get_or_insert(GridExtent {
                min: v,
                max: v,
                degrees: [0; 6],
            });
            e.min = e.min.min(v);
            e.max = e.max.max(v);
            let bin = bin_of(v);
            e.degrees[bin / 64] |= 1 << (bin % 64);
        }
        extent
    }

    fn occupied(&self, bin: usize) -> bool {
        self.degrees[bin / 64] & (1 << (bin % 64)) != 0
    }

    /// West and east in -180..180, read as longitudes: the values' arc is everything
    /// but the widest run of empty bins. West greater than east is an arc across the
    /// antimeridian; a grid that leaves no bin empty is the whole globe.
    pub fn longitude_range(&self) -> (f64, f64) {
        let Some(start) = (0..BINS).find(|&b| self.occupied(b)) else {
            return (-180.0, 180.0);
        };
        // Runs of empty bins as (first empty bin, length), walking once around from an
        // occupied bin so that a run that wraps past 360 is seen whole.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let mut run: Option<(usize, usize)> = None;
        for step in 1..=BINS {
            let bin = (start + step) % BINS;
            if self.occupied(bin) {
                runs.extend(run.take());
            } else {
                run = Some(run.map_or((bin, 1), |(first, n)| (first, n + 1)));
            }
        }
        runs.sort_by_key(|r| std::cmp::Reverse(r.1));
        let widest = runs.first().copied();
        let second = runs.get(1).map_or(0, |r| r.1);
        // Gaps of a few degrees, or one no wider than twice the others, are the spacing
        // of a coarse global grid's columns, not the edge of a region.
        let Some((first_empty, length)) = widest.filter(|w| w.1 >= 3 && w.1 > 2 * second) else {
            return (-180.0, 180.0);
        };
        let west_bin = (first_empty + length) % BINS;
        let east_bin = (first_empty + BINS - 1) % BINS;
        let to_180 = |x: f64| if x >= 180.0 { x - 360.0 } else { x };
        // Where the values' own minimum and maximum fall in the arc's end bins, they
        // say the edges more exactly than the bins do.
        let west = if bin_of(self.min) == west_bin {
            to_180(self.min.rem_euclid(360.0))
        } else {
            to_180(west_bin as f64)
        };
        let east = if bin_of(self.max) == east_bin {
            to_180(self.max.rem_euclid(360.0))
        } else {
            to_180((east_bin + 1) as f64)
        };
        // An arc ending on 180 reads as 180, not -180.
        let east = if east == -180.0 { 180.0 } else { east };
        (west, east)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(lons: impl IntoIterator<Item = f64>) -> GridExtent {
        GridExtent::of(&lons.into_iter().collect::<Vec<_>>(), &[]).expect("values")
    }

    #[test]
    fn a_global_grid_is_the_globe_in_either_convention() {
        let one_degree = grid((0..360).map(|i| i as f64 + 0.5));
        assert_eq!(one_degree.longitude_range(), (-180.0, 180.0));
        let coarse = grid((0..144).map(|i| -180.0 + i as f64 * 2.5));
        assert_eq!(coarse.longitude_range(), (-180.0, 180.0));
        // Ten-degree columns, one seam a little wider: still the globe.
        let sparse = grid((0..35).map(|i| 5.0 + i as f64 * 10.0 + if i > 20 { 3.0 } else { 0.0 }));
        assert_eq!(sparse.longitude_range(), (-180.0, 180.0));
    }

    #[test]
    fn a_regional_grid_keeps_its_edges() {
        let e = grid((0..=40).map(|i| 10.25 + i as f64 * 0.5));
        assert_eq!(e.longitude_range(), (10.25, 30.25));
        let west = grid((0..=20).map(|i| 200.0 + i as f64));
        assert_eq!(west.longitude_range(), (-160.0, -140.0));
        // Coarse columns over a region: the gaps between them are not its edge.
        let coarse = grid((0..=12).map(|i| -60.0 + i as f64 * 5.0));
        assert_eq!(coarse.longitude_range(), (-60.0, 0.0));
    }

    #[test]
    fn an_arc_across_the_antimeridian_has_west_greater_than_east() {
        // 165E to 165W, written 0..360.
        let e = grid((0..=30).map(|i| 165.0 + i as f64));
        assert_eq!(e.longitude_range(), (165.0, -165.0));
        // The same arc written -180..180.
        let f = grid(
            (0..=15)
                .map(|i| 165.0 + i as f64)
                .chain((0..15).map(|i| -179.0 + i as f64)),
        );
        let (w, e) = f.longitude_range();
        assert_eq!((w, e), (165.0, -164.0));
    }

    #[test]
    fn fills_and_impossible_values_are_not_positions() {
        let e = GridExtent::of(&[1e20, f64::NAN, -999.0, 10.0, 12.0], &[-999.0]).unwrap();
        assert_eq!((e.min, e.max), (10.0, 12.0));
        assert!(GridExtent::of(&[1e20, f64::INFINITY], &[]).is_none());
    }
}
