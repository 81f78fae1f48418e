"""Pure translation from one ``MeshSnapshot`` and one ``Proxy`` to Envoy resources.

``names`` (Istio's cluster names), ``destination_rules`` (which DestinationRule applies),
``traffic_policy`` (subset and port-level policy merging), ``clusters`` (CDS) and ``endpoints``
(EDS). No I/O, no clock: the same inputs always give the same messages.
"""

from pilotfish.xds.translate.clusters import hash_policy_for, translate_clusters
from pilotfish.xds.translate.endpoints import translate_endpoints

__all__ = ["hash_policy_for", "translate_clusters", "translate_endpoints"]
