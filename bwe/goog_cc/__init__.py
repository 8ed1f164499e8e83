"""Reference port of libwebrtc m77 goog_cc pieces (as vendored by mediasoup), constant for
constant, used as the baseline the raysfu estimator is compared against (research/bwe.md §0.5).
Sans-I/O: times are integer µs arguments."""
