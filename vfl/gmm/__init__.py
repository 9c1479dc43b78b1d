"""FL-EM-GMM: a Gaussian mixture fitted by EM on columns split between the guest and the host.

Block-diagonal across parties (a component's density is the product of each
party's block density), diagonal or full within a party. The steps, by the
names the protocol phase (nodes.phases.gmm) uses:

- E-step: `GaussianBlock.log_density` at each party, `host_relative_log_densities`
  at the host (no row's level leaves it), `guest_combine_log_densities` at the guest
  (responsibilities stay with it);
- M-step: `guest_encrypt_responsibilities`, `host_encrypted_statistics`,
  `host_mask_statistics`, `guest_decrypt_masked_statistics`,
  `host_unmask_statistics`, then `block_parameters` at each party;
- initialisation: `guest_random_responsibilities`,
  `guest_random_from_data_responsibilities`, federated k-means
  (`block_squared_distances`, `host_relative_distances`, `guest_assign_clusters`,
  `kmeans_centers`);
- model selection: `bic`; the plaintext reference: `centralized_block_em`.
"""

from __future__ import annotations

from vfl._lazy import lazy_getattr

# name -> submodule: imported on first use (PEP 562), so that reading one small module (e.g. the
# options table, which the config parser needs) does not import the whole package
_EXPORTS = {
    "check_block": "vfl.gmm.checks",
    "check_rows_for_k": "vfl.gmm.checks",
    "GRID_BITS": "vfl.gmm.estep",
    "EStep": "vfl.gmm.estep",
    "guest_combine_host_log_densities": "vfl.gmm.estep",
    "guest_combine_log_densities": "vfl.gmm.estep",
    "host_relative_distances": "vfl.gmm.estep",
    "host_relative_log_densities": "vfl.gmm.estep",
    "block_squared_distances": "vfl.gmm.init",
    "cluster_counts": "vfl.gmm.init",
    "guest_assign_clusters": "vfl.gmm.init",
    "guest_random_from_data_responsibilities": "vfl.gmm.init",
    "guest_random_responsibilities": "vfl.gmm.init",
    "guest_random_rows": "vfl.gmm.init",
    "kmeans_centers": "vfl.gmm.init",
    "one_hot": "vfl.gmm.init",
    "adjusted_rand_index": "vfl.gmm.metrics",
    "best_permutation_accuracy": "vfl.gmm.metrics",
    "contingency": "vfl.gmm.metrics",
    "DegenerateComponentError": "vfl.gmm.model",
    "GaussianBlock": "vfl.gmm.model",
    "bic": "vfl.gmm.model",
    "block_parameter_count": "vfl.gmm.model",
    "block_parameters": "vfl.gmm.model",
    "component_sizes": "vfl.gmm.model",
    "split_statistics": "vfl.gmm.model",
    "statistic_features": "vfl.gmm.model",
    "FEATURE_BOUND": "vfl.gmm.mstep",
    "FEATURE_PRECISION": "vfl.gmm.mstep",
    "RESPONSIBILITY_PRECISION": "vfl.gmm.mstep",
    "check_masked_statistics": "vfl.gmm.mstep",
    "features_fit": "vfl.gmm.mstep",
    "guest_decrypt_masked_statistics": "vfl.gmm.mstep",
    "guest_encrypt_responsibilities": "vfl.gmm.mstep",
    "host_encrypted_statistics": "vfl.gmm.mstep",
    "host_mask_statistics": "vfl.gmm.mstep",
    "host_unmask_statistics": "vfl.gmm.mstep",
    "pack_residues": "vfl.gmm.mstep",
    "rows_sum_to_one": "vfl.gmm.mstep",
    "statistic_feature_bound": "vfl.gmm.mstep",
    "unpack_residues": "vfl.gmm.mstep",
    "COVARIANCES": "vfl.gmm.options",
    "INITS": "vfl.gmm.options",
    "GmmOptions": "vfl.gmm.options",
    "GmmOptionsError": "vfl.gmm.options",
    "MixtureFit": "vfl.gmm.reference",
    "ModelSelection": "vfl.gmm.reference",
    "centralized_block_em": "vfl.gmm.reference",
    "centralized_kmeans": "vfl.gmm.reference",
}


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


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
