"""Reference port of libwebrtc m77 goog_cc (as vendored by mediasoup), constant for constant, used
as the baseline the raysfu estimator is compared against (research/bwe.md §0.5, §1).

Modules: ``inter_arrival`` (5 ms packet groups), ``trendline`` (delay gradient, adaptive
threshold), ``aimd`` (AIMD rate control, link-capacity estimator), ``acked_bitrate``,
``delay_based`` (the glue), ``loss_based`` (SendSideBandwidthEstimation, loss v1), ``probing``
(probe controller, probe-result estimator, ALR detector) and ``controller``
(GoogCcNetworkController in feedback-only mode). Sans-I/O: times are integer ms arguments as in
m77 (the trendline takes µs deltas and converts).
"""
