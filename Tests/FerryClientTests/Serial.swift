import Testing

/// Every suite of this target, one test at a time: the integration tests stream thousands of
/// messages and time a stall on 2 cores, and the proxy tests count the process's descriptors and
/// threads. (`.serialized` applies to the suites nested in it, too.)
@Suite(.serialized) enum Serial {}
