//! linfa's traits: fit on a `DatasetBase`, predict scores, transform with the scaler.
//!
//! linfa's `PredictInplace` and `Transformer` cannot return errors. Where the input
//! does not fit (another column count), the scores or scaled values are NaN rather
//! than a panic; the inherent methods (`score`, `scale`) return the error instead.

use itap_telemetry::ParamGuard;
use linfa::dataset::DatasetBase;
use linfa::traits::{Fit, PredictInplace, Transformer};
use ndarray::{Array1, Array2, ArrayBase, Data, Ix2};

use crate::detector::{CheckedDetector, Detector, FittedDetector, Model};
use crate::error::{Error, Result};
use crate::iforest::{CheckedIsolationForest, IsolationForest, IsolationForestParams};
use crate::pca::{CheckedPca, PcaDetector, PcaParams};
use crate::scaler::{StandardScaler, StandardScalerParams};

macro_rules! linfa_fit {
    ($checked:ty, $unchecked:ty, $fitted:ty) => {
        impl<D: Data<Elem = f64>, T> Fit<ArrayBase<D, Ix2>, T, Error> for $checked {
            type Object = $fitted;

            /// Fits on the dataset's records (its targets are not used).
            fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<$fitted> {
                Detector::fit(self, dataset.records.view())
            }
        }

        impl<D: Data<Elem = f64>, T> Fit<ArrayBase<D, Ix2>, T, Error> for $unchecked {
            type Object = $fitted;

            /// Checks the parameters, then fits on the dataset's records.
            fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<$fitted> {
                Detector::fit(&self.clone().check()?, dataset.records.view())
            }
        }
    };
}

linfa_fit!(
    CheckedIsolationForest,
    IsolationForestParams,
    IsolationForest
);
linfa_fit!(CheckedPca, PcaParams, PcaDetector);

impl<D: Data<Elem = f64>, T> Fit<ArrayBase<D, Ix2>, T, Error> for CheckedDetector {
    type Object = Model;

    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<Model> {
        Detector::fit(self, dataset.records.view())
    }
}

fn predict_scores<M: FittedDetector + ?Sized>(
    model: &M,
    x: ndarray::ArrayView2<'_, f64>,
    y: &mut Array1<f64>,
) {
    match model.score(x) {
        Ok(s) if s.len() == y.len() => y.assign(&s),
        _ => y.fill(f64::NAN),
    }
}

macro_rules! linfa_predict {
    ($fitted:ty) => {
        impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for $fitted {
            /// Anomaly scores into `y` (one per row); all NaN when `x` has another
            /// column count or `y` another length.
            fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
                predict_scores(self, x.view(), y);
            }

            fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
                Array1::zeros(x.nrows())
            }
        }
    };
}

linfa_predict!(IsolationForest);
linfa_predict!(PcaDetector);
linfa_predict!(Model);

impl<D: Data<Elem = f64>, T> Fit<ArrayBase<D, Ix2>, T, Error> for StandardScalerParams {
    type Object = StandardScaler;

    /// Fits the scaler on the dataset's records.
    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<StandardScaler> {
        StandardScaler::fit(dataset.records.view())
    }
}

impl Transformer<Array2<f64>, Array2<f64>> for StandardScaler {
    /// Scales the records; all NaN when they have another column count.
    fn transform(&self, mut x: Array2<f64>) -> Array2<f64> {
        if self.scale_inplace(x.view_mut()).is_err() {
            x.fill(f64::NAN);
        }
        x
    }
}

impl<T> Transformer<DatasetBase<Array2<f64>, T>, DatasetBase<Array2<f64>, T>> for StandardScaler {
    /// Scales the dataset's records, keeping its targets, weights and names.
    fn transform(&self, x: DatasetBase<Array2<f64>, T>) -> DatasetBase<Array2<f64>, T> {
        let feature_names = x.feature_names().to_vec();
        let DatasetBase {
            records,
            targets,
            weights,
            ..
        } = x;
        let records = Transformer::<Array2<f64>, Array2<f64>>::transform(self, records);
        DatasetBase::new(records, targets)
            .with_weights(weights)
            .with_feature_names(feature_names)
    }
}
