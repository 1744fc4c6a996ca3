import ArgumentParser
import KernelLab

/// `kernel-lab info`: the machine and library configuration.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the CPU, the kernel ISA in use, NUMA nodes, OpenBLAS and cache sizes.")

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        let info = try SystemInfo.current()
        print(json ? try info.json() : info.table())
    }
}
