import ArgumentParser

/// `kernel-lab`: the command-line front end of KernelLab. Commands parse
/// arguments and print; the work is done by the KernelLab library.
@main
struct KernelLabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel-lab",
        abstract: "Measure fused and unfused CPU kernels against OpenBLAS.",
        subcommands: [InfoCommand.self, AttentionCommand.self, ScanCommand.self, RunCommand.self, CeilingsCommand.self,
                      RooflineCommand.self, TrafficCommand.self, BenchCommand.self, GEMMCommand.self,
                      DecodeCommand.self, LayersCommand.self, TrainCommand.self, DecodeBenchCommand.self, TrainBenchCommand.self,
                      CopyCommand.self])
}
