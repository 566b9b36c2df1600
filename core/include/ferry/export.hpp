#pragma once
// Symbols of libferry are hidden unless marked FERRY_API.
#define FERRY_API __attribute__((visibility("default")))
