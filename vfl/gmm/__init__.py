"""FL-EM-GMM: a Gaussian mixture fitted by EM on columns split between the guest and the host.

Block-diagonal across parties (a component's density is the product of each
party's block density), diagonal or full within a party. The steps, by the
names the protocol phase (nodes.phases.gmm) uses:

- E-step: `GaussianBlock.log_density` at each party, `host_relative_log_densities`
  at each host (no row's level leaves it), `guest_combine_log_densities` at the guest
  (responsibilities stay with it; `guest_combine_host_log_densities` with N hosts);
- M-step: `guest_encrypt_responsibilities`, `host_encrypted_statistics`,
  `host_mask_statistics`, `guest_decrypt_masked_statistics`,
  `host_unmask_statistics`, then `block_parameters` at each party;
- initialisation: `guest_random_responsibilities`,
  `guest_random_from_data_responsibilities`, federated k-means
  (`block_squared_distances`, `host_relative_distances`, `guest_assign_clusters`,
  `kmeans_centers`);
- model selection: `bic`; the plaintext reference: `centralized_block_em`.
"""

from vfl.gmm.checks import check_block, check_rows_for_k
from vfl.gmm.estep import (
    GRID_BITS,
    EStep,
    guest_combine_host_log_densities,
    guest_combine_log_densities,
    host_relative_distances,
    host_relative_log_densities,
)
from vfl.gmm.init import (
    block_squared_distances,
    cluster_counts,
    guest_assign_clusters,
    guest_random_from_data_responsibilities,
    guest_random_responsibilities,
    guest_random_rows,
    kmeans_centers,
    one_hot,
)
from vfl.gmm.metrics import adjusted_rand_index, best_permutation_accuracy, contingency
from vfl.gmm.model import (
    DegenerateComponentError,
    GaussianBlock,
    bic,
    block_parameter_count,
    block_parameters,
    component_sizes,
    split_statistics,
    statistic_features,
)
from vfl.gmm.mstep import (
    FEATURE_BOUND,
    FEATURE_PRECISION,
    RESPONSIBILITY_PRECISION,
    check_masked_statistics,
    features_fit,
    guest_decrypt_masked_statistics,
    guest_encrypt_responsibilities,
    host_encrypted_statistics,
    host_mask_statistics,
    host_unmask_statistics,
    pack_residues,
    rows_sum_to_one,
    statistic_feature_bound,
    unpack_residues,
)
from vfl.gmm.options import COVARIANCES, INITS, GmmOptions, GmmOptionsError
from vfl.gmm.reference import MixtureFit, ModelSelection, centralized_block_em, centralized_kmeans

__all__ = [
    "COVARIANCES", "FEATURE_BOUND", "FEATURE_PRECISION", "GRID_BITS", "INITS", "RESPONSIBILITY_PRECISION",
    "DegenerateComponentError", "EStep", "GaussianBlock", "GmmOptions", "GmmOptionsError",
    "MixtureFit", "ModelSelection",
    "adjusted_rand_index", "best_permutation_accuracy", "bic", "block_parameter_count",
    "block_parameters", "block_squared_distances", "centralized_block_em", "centralized_kmeans",
    "check_block", "check_masked_statistics", "check_rows_for_k", "cluster_counts", "component_sizes", "contingency", "features_fit",
    "guest_assign_clusters", "guest_combine_host_log_densities", "guest_combine_log_densities", "guest_decrypt_masked_statistics",
    "guest_encrypt_responsibilities", "guest_random_from_data_responsibilities",
    "guest_random_responsibilities", "guest_random_rows", "host_encrypted_statistics",
    "host_mask_statistics", "host_relative_distances", "host_relative_log_densities",
    "host_unmask_statistics", "kmeans_centers", "one_hot",
    "pack_residues", "rows_sum_to_one", "split_statistics", "statistic_feature_bound", "statistic_features",
    "unpack_residues",
]
