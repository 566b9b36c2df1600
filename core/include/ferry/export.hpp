#pragma once
// Symbols of libferry are hidden unless marked FERRY_API. A standard attribute, so that it
// combines with others: class [[nodiscard]] FERRY_API RawLoan.
#define FERRY_API [[gnu::visibility("default")]]
