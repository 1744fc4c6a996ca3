// swift-tools-version:6.0
import PackageDescription

// Kernels are compiled optimized even in debug builds (tests time nothing, but
// a -O0 kernel would make the test suite crawl). No -march=native and no
// -ffast-math: ISA variants use target attributes and run-time dispatch.
let kernelFlags: [CSetting] = [
    .unsafeFlags(["-O3", "-fno-math-errno", "-Wall", "-Wextra", "-Wno-unused-parameter"]),
]

let package = Package(
    name: "KernelLab",
    products: [
        .executable(name: "kernel-lab", targets: ["KernelLabCLI"]),
        .executable(name: "kernel-lab-fuzz", targets: ["KernelLabFuzz"]),
        .library(name: "KernelLab", targets: ["KernelLab"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // OpenBLAS through pkg-config (Debian: libopenblas-dev).
        .systemLibrary(
            name: "COpenBLAS",
            path: "Sources/COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .target(
            name: "CKernels",
            dependencies: ["COpenBLAS"],
            path: "Kernels",
            cSettings: kernelFlags,
            linkerSettings: [.linkedLibrary("numa"), .linkedLibrary("pthread"), .linkedLibrary("m")]
        ),
        .target(
            name: "KernelLab",
            dependencies: ["CKernels"],
            path: "Sources/KernelLab"
        ),
        .executableTarget(
            name: "KernelLabCLI",
            dependencies: [
                "KernelLab",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/kernel-lab"
        ),
        // The readers' fuzz targets (one description each, shared by the
        // libFuzzer harness and the regression tests) and the harness.
        .target(
            name: "KernelLabFuzzTargets",
            dependencies: ["KernelLab"],
            path: "Tests/Fuzz/Targets"
        ),
        .executableTarget(
            name: "KernelLabFuzz",
            dependencies: ["KernelLabFuzzTargets"],
            path: "Tests/Fuzz/Harness"
        ),
        .testTarget(
            name: "KernelLabTests",
            dependencies: ["KernelLab", "CKernels", "KernelLabFuzzTargets"],
            path: "Tests/KernelLabTests"
        ),
    ]
)
