import Foundation

/// Draws a `RooflineReport` as a log-log roofline chart in plain SVG (no
/// scripts, no external fonts or files).
///
/// Arithmetic intensity (FLOP per modelled DRAM byte) runs along x and
/// attained GFLOP/s along y, both logarithmic with a gridline per decade.
/// Compute roofs (one per ISA) and exp roofs are horizontal lines that start
/// at their ridge with the DRAM roof; memory roofs (L1, L2, L3, DRAM) are
/// diagonals that end at their ridge with the compute roof of the ISA in
/// use; horizontal roofs are labelled in the right margin, diagonals along
/// their line. Each point is a marker (circle: attention, square: scan,
/// hexagon: a layer kernel; filled: fused, hollow: unfused; colour: kernel
/// and pass) with a label naming its shape, placed where it overlaps least;
/// when the labels cannot be placed apart, short case codes (A1, S2, L3, ...) replace them and a key
/// is added below the legend. An arrow leads from each unfused point to its
/// fused twin. Peers (measurements from outside the lab, e.g. PyTorch's)
/// are points of their own: diamonds (attention) and triangles (scan) in
/// red (forward) and magenta (backward), filled when their bytes are the
/// fused model's, with a legend block of their own below the others.
///
/// Elements carry classes and `data-` attributes (`point`, `peer-point`,
/// `arrow`, `roof-compute`, `roof-memory`, `roof-exp`, `data-intensity`, ...) so that
/// tools and tests can read the chart back.
public struct RooflineChart: Sendable {
    /// Width of the whole picture, in px.
    public var width: Double = 1080
    /// Height of the picture without the case key, in px (the key, when
    /// labels fall back to codes, adds a few rows below).
    public var height: Double = 830

    private let report: RooflineReport

    /// A chart of `report`.
    public init(report: RooflineReport) {
        self.report = report
    }

    // Layout: the plot, the labels of horizontal roofs in the right margin
    // (level with their lines), the legend in a band below.
    private var plotLeft: Double { 84 }
    private var plotTop: Double { 66 }
    private var plotRight: Double { width - 262 }
    private var plotBottom: Double { height - 236 }
    private var legendTop: Double { plotBottom + 66 }

    static let fontFamily = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif"
    static let pointLabelSize = 11.5

    /// The SVG document.
    public func svg() -> String {
        let scale = Scale(report: report, left: plotLeft, top: plotTop, right: plotRight, bottom: plotBottom)
        var svg = SVGWriter(depth: 1)
        header(&svg)
        grid(&svg, scale)

        // Markers and arrows are placed by the data; every label then goes
        // where it overlaps them (and the labels before it) the least.
        let markers = report.points.map { point in
            (point: point, x: scale.x(point.intensity), y: scale.y(point.gflops))
        }
        let peers = report.peers ?? []
        let peerMarkers = peers.map { peer in (peer: peer, x: scale.x(peer.intensity), y: scale.y(peer.gflops)) }
        // Markers keep a margin that other points' labels stay out of.
        var placed: [Box] = markers.map { Box(centerX: $0.x, centerY: $0.y, width: 22, height: 22, owner: $0.point.id) }
        placed += peerMarkers.map { Box(centerX: $0.x, centerY: $0.y, width: 22, height: 22, owner: $0.peer.id) }
        var arrows: [(pair: RooflinePair, from: (Double, Double), to: (Double, Double))] = []
        for pair in report.pairs {
            guard let from = markers.first(where: { $0.point.id == pair.unfused }),
                  let to = markers.first(where: { $0.point.id == pair.fused }) else { continue }
            arrows.append((pair, (from.x, from.y), (to.x, to.y)))
            placed += segmentBoxes(from: (from.x, from.y), to: (to.x, to.y), thickness: 6)
        }

        svg.open("g", [("clip-path", "url(#plot-area)"), ("class", "roofs")])
        let roofLabels = roofs(&svg, scale, placed: &placed)
        svg.close("g")

        svg.open("g", [("class", "arrows")])
        for arrow in arrows {
            self.arrow(&svg, pair: arrow.pair, from: arrow.from, to: arrow.to)
        }
        svg.close("g")

        svg.open("g", [("class", "points")])
        for marker in markers {
            pointMarker(&svg, marker.point, x: marker.x, y: marker.y)
        }
        svg.close("g")
        if !peerMarkers.isEmpty {
            svg.open("g", [("class", "peers")])
            for marker in peerMarkers {
                peerMarker(&svg, marker.peer, x: marker.x, y: marker.y)
            }
            svg.close("g")
        }

        svg.open("g", [("class", "roof-labels")])
        for label in roofLabels {
            svg.raw(label)
        }
        svg.close("g")

        // Labels name the shape (marker and colour give kernel and pass). When
        // they cannot be placed without overlapping, short case codes (A1,
        // S2, ...) replace them and a key below the legend spells them out.
        // Peers are labelled after the lab's points, so those keep the best spots.
        let codes = Self.caseCodes(report.points)
        let peerCodes = Self.peerCodes(peers, points: report.points, caseCodes: codes)
        func labelAll(codes useCodes: Bool) -> [(svg: String, overlap: Double)] {
            var labelled = placed
            let pointLabels = markers.map { marker in
                pointLabel(id: marker.point.id, color: Self.textColor(marker.point.kernel, marker.point.pass),
                           text: useCodes ? codes[marker.point.caseIndex] ?? "?" : Self.shortLabel(marker.point.label),
                           x: marker.x, y: marker.y, bold: useCodes,
                           attributes: [("class", "point-label"), ("data-point", marker.point.id)], placed: &labelled)
            }
            let peerLabels = peerMarkers.map { marker in
                pointLabel(id: marker.peer.id, color: Self.peerTextColor(marker.peer.pass),
                           text: useCodes ? peerCodes[marker.peer.id] ?? "?" : Self.shortLabel(marker.peer.label),
                           x: marker.x, y: marker.y, bold: useCodes,
                           attributes: [("class", "peer-label"), ("data-peer", marker.peer.id)], placed: &labelled)
            }
            return pointLabels + peerLabels
        }
        var labels = labelAll(codes: false)
        let useCodes = labels.reduce(0) { $0 + $1.overlap } > 40
        if useCodes {
            labels = labelAll(codes: true)
        }
        svg.open("g", [("class", "point-labels")])
        for label in labels {
            svg.raw(label.svg)
        }
        svg.close("g")

        legend(&svg)
        var height = self.height
        if !peers.isEmpty {
            height += peerLegend(&svg, peers: peers, top: height - 6)
        }
        if useCodes {
            height += caseKey(&svg, codes: codes, peerCodes: peerCodes, top: height - 6)
        }

        var document = SVGWriter()
        document.open("svg", [
            ("xmlns", "http://www.w3.org/2000/svg"), ("width", fmt(width)), ("height", fmt(height)),
            ("viewBox", "0 0 \(fmt(width)) \(fmt(height))"), ("font-family", Self.fontFamily), ("class", "roofline-chart"),
        ])
        document.element("title", text: "Roofline: \(report.machine.cpuModel), \(report.isa.rawValue), \(report.threads) thread(s)")
        defs(&document)
        document.element("rect", [("x", "0"), ("y", "0"), ("width", fmt(width)), ("height", fmt(height)), ("fill", "#ffffff")])
        document.raw(svg.text, indented: false)
        document.close("svg")
        return document.text
    }

    /// A suite label without its kernel prefix: "attn L4096 causal" -> "L4096 causal".
    static func shortLabel(_ label: String) -> String {
        for prefix in ["attn ", "scan "] where label.hasPrefix(prefix) && label.count > prefix.count {
            return String(label.dropFirst(prefix.count))
        }
        return label
    }

    /// "A1", "A2", ... for attention cases, "S1", ... for scan cases and "L1", ... for layer cases, by case index.
    static func caseCodes(_ points: [RooflinePoint]) -> [Int: String] {
        var codes: [Int: String] = [:]
        var counts: [RooflineKernel: Int] = [:]
        for point in points where codes[point.caseIndex] == nil {
            counts[point.kernel, default: 0] += 1
            let prefix = switch point.kernel { case .attention: "A"; case .scan: "S"; case .layer: "L" }
            codes[point.caseIndex] = prefix + String(counts[point.kernel]!)
        }
        return codes
    }

    /// A code per peer id: its lab case's code when a lab point has its label
    /// (the same shape), else "P1", "P2", ... by distinct label.
    static func peerCodes(_ peers: [RooflinePeer], points: [RooflinePoint], caseCodes: [Int: String]) -> [String: String] {
        var codes: [String: String] = [:]
        var own: [String: String] = [:]
        for peer in peers {
            if let point = points.first(where: { $0.label == peer.label }), let code = caseCodes[point.caseIndex] {
                codes[peer.id] = code
            } else {
                let code = own[peer.label] ?? "P\(own.count + 1)"
                own[peer.label] = code
                codes[peer.id] = code
            }
        }
        return codes
    }

    /// Writes the key of the case codes from `top` down; returns its height.
    private func caseKey(_ svg: inout SVGWriter, codes: [Int: String], peerCodes: [String: String] = [:], top: Double) -> Double {
        var entries: [String] = []
        for index in codes.keys.sorted() {
            guard let point = report.points.first(where: { $0.caseIndex == index }) else { continue }
            entries.append("\(codes[index]!) = \(point.label)")
        }
        // Peers of shapes without a lab point have codes of their own.
        var seen = Set(codes.values)
        for peer in report.peers ?? [] {
            guard let code = peerCodes[peer.id], !seen.contains(code) else { continue }
            seen.insert(code)
            entries.append("\(code) = \(peer.label)")
        }
        let x = plotLeft - 40
        var y = top + 12
        svg.open("g", [("class", "case-key")])
        svg.element("text", [("x", fmt(x)), ("y", fmt(y)), ("font-size", "13.5"), ("font-weight", "bold"), ("fill", "#111111")],
                    text: "Cases")
        // Rows of up to four entries, in columns.
        let columnWidth = (width - x - 20) / 4
        for (row, start) in stride(from: 0, to: entries.count, by: 4).enumerated() {
            for (column, entry) in entries[start..<min(start + 4, entries.count)].enumerated() {
                svg.element("text", [("x", fmt(x + Double(column) * columnWidth)), ("y", fmt(y + 22 + Double(row) * 19)),
                                     ("font-size", "12"), ("fill", "#222222"), ("class", "case-key-entry")], text: entry)
            }
        }
        y += 22 + Double((entries.count + 3) / 4) * 19
        svg.close("g")
        return y - top
    }

    // MARK: - Pieces

    private func defs(_ svg: inout SVGWriter) {
        svg.open("defs")
        svg.open("clipPath", [("id", "plot-area")])
        svg.element("rect", [("x", fmt(plotLeft)), ("y", fmt(plotTop)),
                             ("width", fmt(plotRight - plotLeft)), ("height", fmt(plotBottom - plotTop))])
        svg.close("clipPath")
        svg.open("marker", [("id", "arrowhead"), ("viewBox", "0 0 10 10"), ("refX", "9"), ("refY", "5"),
                            ("markerWidth", "7"), ("markerHeight", "7"), ("orient", "auto-start-reverse"),
                            ("markerUnits", "userSpaceOnUse")])
        svg.element("path", [("d", "M 0 0 L 10 5 L 0 10 z"), ("fill", "#333333")])
        svg.close("marker")
        svg.close("defs")
    }

    private func header(_ svg: inout SVGWriter) {
        svg.element("text", [("x", fmt(plotLeft)), ("y", "28"), ("font-size", "18"), ("font-weight", "bold"), ("fill", "#111111"),
                             ("class", "chart-title")],
                    text: "Roofline: \(report.machine.cpuModel) · \(report.isa.rawValue) · \(report.threads) thread\(report.threads == 1 ? "" : "s")")
        svg.element("text", [("x", fmt(plotLeft)), ("y", "48"), ("font-size", "12.5"), ("fill", "#444444")],
                    text: "suite '\(report.suite)' · median of timed calls · intensity from the DRAM byte model · \(report.date)")
    }

    private func grid(_ svg: inout SVGWriter, _ scale: Scale) {
        svg.open("g", [("class", "grid")])
        // Minor gridlines at 2..9 × each decade, then decades on top.
        for decade in scale.xDecades.dropLast() {
            for k in 2...9 {
                let x = scale.x(pow(10, Double(decade)) * Double(k))
                svg.element("line", [("x1", fmt(x)), ("y1", fmt(plotTop)), ("x2", fmt(x)), ("y2", fmt(plotBottom)),
                                     ("stroke", "#f0f0f0"), ("stroke-width", "1")])
            }
        }
        for decade in scale.yDecades.dropLast() {
            for k in 2...9 {
                let y = scale.y(pow(10, Double(decade)) * Double(k))
                svg.element("line", [("x1", fmt(plotLeft)), ("y1", fmt(y)), ("x2", fmt(plotRight)), ("y2", fmt(y)),
                                     ("stroke", "#f0f0f0"), ("stroke-width", "1")])
            }
        }
        for decade in scale.xDecades {
            let value = pow(10, Double(decade))
            let x = scale.x(value)
            svg.element("line", [("x1", fmt(x)), ("y1", fmt(plotTop)), ("x2", fmt(x)), ("y2", fmt(plotBottom + 5)),
                                 ("stroke", "#d0d0d0"), ("stroke-width", "1"), ("class", "gridline gridline-x")])
            svg.element("text", [("x", fmt(x)), ("y", fmt(plotBottom + 20)), ("font-size", "12.5"), ("text-anchor", "middle"),
                                 ("fill", "#333333"), ("class", "tick tick-x"), ("data-value", number(value))],
                        text: decadeLabel(decade))
        }
        for decade in scale.yDecades {
            let value = pow(10, Double(decade))
            let y = scale.y(value)
            svg.element("line", [("x1", fmt(plotLeft - 5)), ("y1", fmt(y)), ("x2", fmt(plotRight)), ("y2", fmt(y)),
                                 ("stroke", "#d0d0d0"), ("stroke-width", "1"), ("class", "gridline gridline-y")])
            svg.element("text", [("x", fmt(plotLeft - 9)), ("y", fmt(y + 4.5)), ("font-size", "12.5"), ("text-anchor", "end"),
                                 ("fill", "#333333"), ("class", "tick tick-y"), ("data-value", number(value))],
                        text: decadeLabel(decade))
        }
        svg.element("rect", [("x", fmt(plotLeft)), ("y", fmt(plotTop)), ("width", fmt(plotRight - plotLeft)),
                             ("height", fmt(plotBottom - plotTop)), ("fill", "none"), ("stroke", "#888888"), ("stroke-width", "1")])
        svg.element("text", [("x", fmt((plotLeft + plotRight) / 2)), ("y", fmt(plotBottom + 44)), ("font-size", "13.5"),
                             ("text-anchor", "middle"), ("fill", "#222222"), ("class", "axis-label")],
                    text: "arithmetic intensity (FLOP per modelled DRAM byte)")
        let middle = (plotTop + plotBottom) / 2
        svg.element("text", [("x", "0"), ("y", "0"), ("font-size", "13.5"), ("text-anchor", "middle"), ("fill", "#222222"),
                             ("transform", "translate(\(fmt(plotLeft - 54)) \(fmt(middle))) rotate(-90)"), ("class", "axis-label")],
                    text: "attained GFLOP/s")
        svg.close("g")
    }

    /// Draws the roof lines (inside the clip) and returns their labels, to be
    /// drawn over the lines and markers; each label's space joins `placed`.
    private func roofs(_ svg: inout SVGWriter, _ scale: Scale, placed: inout [Box]) -> [String] {
        let roofs = report.roofs
        var labels: [String] = []
        let (xMin, xMax) = (scale.xMin, scale.xMax)
        let (yMin, yMax) = (scale.yMin, scale.yMax)

        // The ridge point of the roofs the bounds use: DRAM meets the peak.
        let ridgeX = scale.x(roofs.ridgeFlopPerByte), ridgeY = scale.y(roofs.peakGflops)
        let ridgeVisible = ridgeX >= plotLeft && ridgeX <= plotRight
        if ridgeVisible {
            svg.element("line", [("x1", fmt(ridgeX)), ("y1", fmt(ridgeY)), ("x2", fmt(ridgeX)), ("y2", fmt(plotBottom)),
                                 ("stroke", "#111111"), ("stroke-width", "1"), ("stroke-dasharray", "1 3"), ("class", "ridge-drop")])
            svg.element("circle", [("cx", fmt(ridgeX)), ("cy", fmt(ridgeY)), ("r", "4"), ("fill", "#111111"),
                                   ("class", "ridge"), ("data-intensity", number(roofs.ridgeFlopPerByte))])
            placed.append(Box(centerX: ridgeX, centerY: ridgeY, width: 10, height: 10))
        }

        // Memory roofs: y = bandwidth * x, from the plot's edge to the ridge with the peak.
        for memory in roofs.memory.reversed() {
            let style = Self.memoryStyle(memory.level)
            var start = xMin
            if memory.gbs * start < yMin { start = yMin / memory.gbs }
            let end = min(memory.ridgeFlopPerByte, xMax, yMax / memory.gbs)
            guard end > start else { continue }
            let (x1, y1, x2, y2) = (scale.x(start), scale.y(memory.gbs * start), scale.x(end), scale.y(memory.gbs * end))
            svg.element("line", [("x1", fmt(x1)), ("y1", fmt(y1)), ("x2", fmt(x2)), ("y2", fmt(y2)),
                                 ("stroke", style.color), ("stroke-width", style.width), ("class", "roof roof-memory"),
                                 ("data-level", memory.level.rawValue), ("data-gbs", number(memory.gbs)),
                                 ("data-kernel", memory.kernel.rawValue), ("data-ridge", number(memory.ridgeFlopPerByte))])
            placed += segmentBoxes(from: (x1, y1), to: (x2, y2), thickness: 4)
            // The label runs along the line, above it, where it collides least.
            let length = hypot(x2 - x1, y2 - y1)
            let text = "\(memory.level.label) \(formatSignificant(memory.gbs)) GB/s"
            let textWidth = textWidthEstimate(text, size: 12)
            let (ux, uy) = ((x2 - x1) / length, (y2 - y1) / length)
            let angle = atan2(y2 - y1, x2 - x1) * 180 / .pi
            let room = length - textWidth - 6
            guard room > 0 else { continue }
            var candidates: [Candidate] = []
            // Above the line first, then below it (close lines, e.g. L2 and
            // L3 of similar bandwidth, get one label on each side).
            for (side, baseline) in [(1.0, -5.0), (-1.0, 14.0)] {
            for fraction in [0.08, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95] {
                let along = 6 + room * fraction
                let (ax, ay) = (x1 + ux * along, y1 + uy * along)
                // A rotated label as a chain of small boxes along its baseline.
                let boxes = stride(from: 0.0, through: textWidth, by: 7).map { d in
                    Box(centerX: ax + ux * d + side * uy * 9, centerY: ay + uy * d - side * ux * 9, width: 9, height: 9)
                }
                let element = SVGWriter.render(
                    "text", [("x", "0"), ("y", fmt(baseline)), ("font-size", "12"), ("fill", style.color),
                             ("font-weight", memory.level == .dram ? "bold" : "normal"),
                             ("transform", "translate(\(fmt(ax)) \(fmt(ay))) rotate(\(fmt(angle)))"),
                             ("class", "roof-label roof-label-memory"), ("data-level", memory.level.rawValue)],
                    text: text, halo: true)
                candidates.append(Candidate(svg: element, boxes: boxes))
            }
            }
            labels.append(choose(candidates, placed: &placed))
        }

        // Horizontal roofs: compute per ISA (equal peaks share one line and
        // label), exp per kind of call, the sgemm reference.
        struct Horizontal {
            var value: Double
            var text: String
            var color: String
            var bold: Bool
            var labelAttributes: [(String, String)]
            var lineAttributes: [(String, String)]
            var start: Double
        }
        var horizontals: [Horizontal] = []
        var computeGroups: [[RooflineRoofs.Compute]] = []
        for compute in roofs.compute.sorted(by: { ($0.isa == report.isa ? 0 : 1, -$0.gflops) < ($1.isa == report.isa ? 0 : 1, -$1.gflops) }) {
            if let index = computeGroups.firstIndex(where: { abs($0[0].gflops / compute.gflops - 1) < 0.03 }) {
                computeGroups[index].append(compute)
            } else {
                computeGroups.append([compute])
            }
        }
        for group in computeGroups {
            let lead = group[0]
            let active = group.contains { $0.isa == report.isa }
            let color = active ? "#111111" : (lead.isa == .scalar ? "#9a9a9a" : "#6a6a6a")
            let names = group.map(\.isa.rawValue).joined(separator: " = ")
            horizontals.append(Horizontal(
                value: lead.gflops, text: "\(names) peak \(formatSignificant(lead.gflops)) GFLOP/s", color: color, bold: active,
                labelAttributes: [("class", "roof-label roof-label-compute"), ("data-isa", lead.isa.rawValue)],
                lineAttributes: [("stroke", color), ("stroke-width", active ? "2.4" : "1.5"), ("class", "roof roof-compute"),
                                 ("data-isa", lead.isa.rawValue), ("data-isas", group.map(\.isa.rawValue).joined(separator: " ")),
                                 ("data-gflops", number(lead.gflops)), ("data-ridge", number(lead.ridgeFlopPerByte))],
                start: lead.ridgeFlopPerByte))
        }
        for exp in roofs.exp where exp.gflops < roofs.peakGflops {
            let color = Self.color(exp.kernel, exp.pass)
            horizontals.append(Horizontal(
                value: exp.gflops,
                text: "exp limit \(exp.kernel.rawValue) \(Self.passShort(exp.pass)) \(formatSignificant(exp.gflops)) GFLOP/s-eq",
                color: color, bold: false, labelAttributes: [("class", "roof-label roof-label-exp")],
                lineAttributes: [("stroke", color), ("stroke-width", "1.8"), ("stroke-dasharray", "7 4"), ("class", "roof roof-exp"),
                                 ("data-kernel", exp.kernel.rawValue), ("data-pass", exp.pass.rawValue),
                                 ("data-gflops", number(exp.gflops)), ("data-flops-per-exp", number(exp.flopsPerExp))],
                start: exp.gflops / roofs.dramGBs))
        }
        if let sgemm = roofs.sgemmGflops, sgemm > 0 {
            horizontals.append(Horizontal(
                value: sgemm, text: "sgemm (OpenBLAS) \(formatSignificant(sgemm)) GFLOP/s", color: "#555555", bold: false,
                labelAttributes: [("class", "roof-label roof-label-sgemm")],
                lineAttributes: [("stroke", "#555555"), ("stroke-width", "1.3"), ("stroke-dasharray", "2 3"),
                                 ("class", "reference reference-sgemm"), ("data-gflops", number(sgemm))],
                start: sgemm / roofs.dramGBs))
        }
        for line in horizontals {
            let y = scale.y(line.value)
            let x1 = scale.x(max(line.start, xMin))
            svg.element("line", [("x1", fmt(x1)), ("y1", fmt(y)), ("x2", fmt(plotRight)), ("y2", fmt(y))] + line.lineAttributes)
            var lineBox = Box(left: x1, top: y - 2, width: plotRight - x1, height: 4)
            lineBox.soft = true
            placed.append(lineBox)
        }
        // Labels in the right margin, level with their lines; labels that
        // would overlap are pushed apart and joined to their line by a tick.
        let spacing = 15.0
        var slots = horizontals.map { (line: $0, y: scale.y($0.value), labelY: scale.y($0.value)) }
            .sorted { $0.y < $1.y }
        for index in slots.indices.dropFirst() where slots[index].labelY < slots[index - 1].labelY + spacing {
            slots[index].labelY = slots[index - 1].labelY + spacing
        }
        if let last = slots.last, last.labelY > plotBottom {
            let shift = last.labelY - plotBottom
            for index in slots.indices { slots[index].labelY -= shift }
            for index in slots.indices.reversed().dropFirst() where slots[index].labelY > slots[index + 1].labelY - spacing {
                slots[index].labelY = slots[index + 1].labelY - spacing
            }
        }
        for slot in slots {
            let textX = plotRight + 12
            if abs(slot.labelY - slot.y) > 1 {
                labels.append(SVGWriter.render(
                    "polyline", [("points", "\(fmt(plotRight)),\(fmt(slot.y)) \(fmt(plotRight + 4)),\(fmt(slot.y)) \(fmt(textX - 3)),\(fmt(slot.labelY))"),
                                 ("fill", "none"), ("stroke", slot.line.color), ("stroke-width", "1"), ("class", "roof-tick")]))
            } else {
                labels.append(SVGWriter.render(
                    "line", [("x1", fmt(plotRight)), ("y1", fmt(slot.y)), ("x2", fmt(textX - 3)), ("y2", fmt(slot.y)),
                             ("stroke", slot.line.color), ("stroke-width", "1"), ("class", "roof-tick")]))
            }
            labels.append(SVGWriter.render(
                "text", [("x", fmt(textX)), ("y", fmt(slot.labelY + 4)), ("font-size", "12"),
                         ("fill", slot.line.color), ("font-weight", slot.line.bold ? "bold" : "normal")] + slot.line.labelAttributes,
                text: slot.line.text))
        }

        if ridgeVisible {
            let text = "ridge \(formatSignificant(roofs.ridgeFlopPerByte)) FLOP/B"
            let width = textWidthEstimate(text, size: 12)
            var candidates: [Candidate] = []
            for (dx, dy, anchor) in [(7.0, 17.0, "start"), (-7.0, 17.0, "end"), (7.0, 32.0, "start"), (-7.0, 32.0, "end")] {
                let left = anchor == "start" ? ridgeX + dx : ridgeX + dx - width
                candidates.append(Candidate(
                    svg: SVGWriter.render("text", [("x", fmt(ridgeX + dx)), ("y", fmt(ridgeY + dy)), ("font-size", "12"),
                                                   ("text-anchor", anchor), ("fill", "#111111"), ("class", "roof-label ridge-label")],
                                          text: text, halo: true),
                    boxes: [Box(left: left, top: ridgeY + dy - 11, width: width, height: 14)]))
            }
            labels.append(choose(candidates, placed: &placed))
        }
        return labels
    }

    /// The candidate that overlaps `placed` least (the first on ties, so
    /// candidates go in order of preference); its boxes join `placed`.
    private func choose(_ candidates: [Candidate], placed: inout [Box]) -> String {
        let plot = Box(left: plotLeft, top: plotTop, width: plotRight - plotLeft, height: plotBottom - plotTop)
        func cost(_ candidate: Candidate) -> Double {
            candidate.boxes.reduce(0) { total, box in
                total + placed.reduce(0) { $0 + $1.overlap(box) } + (box.width * box.height - plot.overlap(box)) * 4
            }
        }
        var best = candidates[0], bestCost = cost(candidates[0])
        for candidate in candidates.dropFirst() where bestCost > 0 {
            let c = cost(candidate)
            if c < bestCost { (best, bestCost) = (candidate, c) }
        }
        placed += best.boxes
        return best.svg
    }

    /// Small boxes covering the segment, for labels to avoid it.
    private func segmentBoxes(from: (Double, Double), to: (Double, Double), thickness: Double) -> [Box] {
        let length = hypot(to.0 - from.0, to.1 - from.1)
        let steps = max(Int(length / thickness), 1)
        return (0...steps).map { i in
            let t = Double(i) / Double(steps)
            var box = Box(centerX: from.0 + (to.0 - from.0) * t, centerY: from.1 + (to.1 - from.1) * t, width: thickness, height: thickness)
            box.soft = true
            return box
        }
    }

    private func arrow(_ svg: inout SVGWriter, pair: RooflinePair, from: (Double, Double), to: (Double, Double)) {
        let dx = to.0 - from.0, dy = to.1 - from.1
        let length = hypot(dx, dy)
        // Start and end just outside the markers (radius ~6), unless they overlap.
        let gapStart = 8.0, gapEnd = 9.0
        var (x1, y1, x2, y2) = (from.0, from.1, to.0, to.1)
        if length > gapStart + gapEnd + 4 {
            x1 += dx / length * gapStart
            y1 += dy / length * gapStart
            x2 -= dx / length * gapEnd
            y2 -= dy / length * gapEnd
        }
        svg.element("line", [("x1", fmt(x1)), ("y1", fmt(y1)), ("x2", fmt(x2)), ("y2", fmt(y2)),
                             ("stroke", "#333333"), ("stroke-width", "1.4"),
                             ("marker-end", length > gapStart + gapEnd + 4 ? "url(#arrowhead)" : "none"),
                             ("class", "arrow"), ("data-from", pair.unfused), ("data-to", pair.fused),
                             ("data-speedup", number(pair.speedup))])
    }

    /// A hexagon of radius `r` around (x, y): the layer kernels' marker (the
    /// peers have the diamond and the triangle).
    private func hexagon(_ x: Double, _ y: Double, _ r: Double) -> String {
        (0..<6).map { k -> String in
            let angle = Double(k) * Double.pi / 3
            return "\(fmt(x + r * cos(angle))),\(fmt(y + r * sin(angle)))"
        }.joined(separator: " ")
    }

    private func pointMarker(_ svg: inout SVGWriter, _ point: RooflinePoint, x: Double, y: Double) {
        let color = Self.color(point.kernel, point.pass)
        let fill = point.impl == .fused ? color : "#ffffff"
        svg.open("g", [("class", "point"), ("id", point.id), ("data-kernel", point.kernel.rawValue),
                       ("data-impl", point.impl.rawValue), ("data-pass", point.pass.rawValue),
                       ("data-label", point.label), ("data-intensity", number(point.intensity)),
                       ("data-gflops", number(point.gflops)), ("data-bound", point.bound.rawValue)])
        svg.element("title", text: "\(point.label) \(point.pass.rawValue) \(point.impl.rawValue): "
                    + "\(formatSignificant(point.gflops)) GFLOP/s at \(formatSignificant(point.intensity)) FLOP/B, "
                    + "\(point.bound.rawValue)-bound (\(formatPercent(point.fractionOfBound)) of \(formatSignificant(point.boundGflops)) GFLOP/s)")
        switch point.kernel {
        case .attention:
            svg.element("circle", [("cx", fmt(x)), ("cy", fmt(y)), ("r", "6"), ("fill", fill), ("stroke", color), ("stroke-width", "2")])
        case .scan:
            svg.element("rect", [("x", fmt(x - 5.5)), ("y", fmt(y - 5.5)), ("width", "11"), ("height", "11"),
                                 ("fill", fill), ("stroke", color), ("stroke-width", "2")])
        case .layer:
            svg.element("polygon", [("points", hexagon(x, y, 7)), ("fill", fill), ("stroke", color), ("stroke-width", "2")])
        }
        svg.close("g")
    }

    private func peerMarker(_ svg: inout SVGWriter, _ peer: RooflinePeer, x: Double, y: Double) {
        svg.open("g", [("class", "peer-point"), ("id", peer.id), ("data-peer", peer.name), ("data-kernel", peer.kernel.rawValue),
                       ("data-model", peer.model.rawValue), ("data-pass", peer.pass.rawValue),
                       ("data-label", peer.label), ("data-intensity", number(peer.intensity)),
                       ("data-gflops", number(peer.gflops)), ("data-bound", peer.bound.rawValue)])
        svg.element("title", text: "\(peer.name) \(peer.label) \(peer.pass.rawValue) (peer, \(report.peerSource ?? "peer")): "
                    + "\(formatSignificant(peer.gflops)) GFLOP/s at \(formatSignificant(peer.intensity)) FLOP/B "
                    + "of the lab's \(peer.model.rawValue) byte model (an estimate)")
        svg.element("polygon", Self.peerShape(peer.kernel, model: peer.model, pass: peer.pass, x: x, y: y))
        svg.close("g")
    }

    /// A peer's marker, centred on (x, y): a diamond (attention) or a
    /// triangle (scan), filled when its bytes are the fused model's.
    static func peerShape(_ kernel: RooflineKernel, model: KernelImpl, pass: KernelPass, x: Double, y: Double) -> [(String, String)] {
        let color = peerColor(pass)
        let corners: [(Double, Double)] = kernel == .attention
            ? [(0, -7.5), (7.5, 0), (0, 7.5), (-7.5, 0)]
            : [(0, -7.5), (7, 5.5), (-7, 5.5)]
        let points = corners.map { "\(fmt(x + $0.0)),\(fmt(y + $0.1))" }.joined(separator: " ")
        return [("points", points), ("fill", model == .fused ? color : "#ffffff"), ("stroke", color), ("stroke-width", "2"),
                ("stroke-linejoin", "round")]
    }

    /// The peers' block below the legend: one entry per (peer, pass) with its
    /// marker, and what their bytes are. Returns its height.
    private func peerLegend(_ svg: inout SVGWriter, peers: [RooflinePeer], top: Double) -> Double {
        var kinds: [RooflinePeer] = []
        for peer in peers where !kinds.contains(where: { $0.name == peer.name && $0.pass == peer.pass }) {
            kinds.append(peer)
        }
        let x = plotLeft - 40
        let y = top + 12
        svg.open("g", [("class", "peer-legend")])
        svg.element("text", [("x", fmt(x)), ("y", fmt(y)), ("font-size", "13.5"), ("font-weight", "bold"), ("fill", "#111111")],
                    text: "Peers: \(report.peerSource ?? "peer"), measured outside the lab")
        let note = "Their bytes (x axis) are the lab's cost model for the same shape, fused for a fused peer, unfused for a "
            + "materialized one: an estimate, not a measurement. FLOPs are the lab's convention. Same-run speed ratios: compare.md."
        let noteLines = wrap(note, width: Int((width - x - 16) / (11.5 * 0.58)))
        for (index, text) in noteLines.enumerated() {
            svg.element("text", [("x", fmt(x)), ("y", fmt(y + 18 + Double(index) * 15)), ("font-size", "11.5"), ("fill", "#444444"),
                                 ("class", "peer-legend-note")], text: text)
        }
        let entriesTop = y + 24 + Double(noteLines.count) * 15
        // Rows of up to three entries, in columns.
        let columnWidth = (width - x - 20) / 3
        for (row, start) in stride(from: 0, to: kinds.count, by: 3).enumerated() {
            for (column, peer) in kinds[start..<min(start + 3, kinds.count)].enumerated() {
                let ex = x + Double(column) * columnWidth, ey = entriesTop + Double(row) * 21
                svg.element("polygon", Self.peerShape(peer.kernel, model: peer.model, pass: peer.pass, x: ex + 11, y: ey))
                svg.element("text", [("x", fmt(ex + 30)), ("y", fmt(ey + 4)), ("font-size", "12"), ("fill", "#222222"),
                                     ("class", "peer-legend-entry")],
                            text: "\(peer.name) \(peer.pass.rawValue) · lab \(peer.model.rawValue) bytes")
            }
        }
        svg.close("g")
        return entriesTop - top + Double((kinds.count + 2) / 3) * 21
    }

    /// Places `text` for the marker at (x, y) where it overlaps `placed`
    /// least; returns its SVG (with a leader line when away from the
    /// marker) and the overlap it could not avoid, in px².
    private func pointLabel(id: String, color: String, text: String, x: Double, y: Double, bold: Bool = false,
                            attributes: [(String, String)], placed: inout [Box]) -> (svg: String, overlap: Double) {
        var svg = SVGWriter()
        let size = Self.pointLabelSize
        // A little padding keeps neighbouring labels apart.
        let w = textWidthEstimate(text, size: size) + 4, h = size + 3
        // Candidate spots around the marker, nearest first, then farther out.
        var candidates: [(box: Box, anchor: String, tx: Double, ty: Double, far: Bool)] = []
        for (distance, far) in [(10.0, false), (24.0, true), (40.0, true)] {
            let spots: [(Double, Double, String)] = [
                (x + distance, y, "start"), (x - distance, y, "end"),
                (x + distance * 0.7, y - distance * 0.8, "start"), (x + distance * 0.7, y + distance * 0.8, "start"),
                (x - distance * 0.7, y - distance * 0.8, "end"), (x - distance * 0.7, y + distance * 0.8, "end"),
                (x, y - distance - 2, "middle"), (x, y + distance + 4, "middle"),
            ]
            for (sx, sy, anchor) in spots {
                let left = anchor == "start" ? sx - 2 : anchor == "end" ? sx - w + 2 : sx - w / 2
                let box = Box(left: left, top: sy - h / 2, width: w, height: h)
                candidates.append((box, anchor, sx, sy + size * 0.36, far))
            }
        }
        let plot = Box(left: plotLeft + 2, top: plotTop + 2, width: plotRight - plotLeft - 4, height: plotBottom - plotTop - 4)
        func cost(_ box: Box, far: Bool) -> Double {
            var total = placed.reduce(0) { $0 + ($1.owner == id ? 0 : $1.overlap(box) * ($1.soft ? 0.3 : 1)) }
            total += (box.width * box.height - plot.overlap(box)) * 4  // outside the plot
            return total + (far ? 1 : 0)
        }
        let best = candidates.enumerated().min { a, b in
            let ca = cost(a.element.box, far: a.element.far), cb = cost(b.element.box, far: b.element.far)
            return ca != cb ? ca < cb : a.offset < b.offset
        }!.element
        let overlap = placed.reduce(0) { $0 + ($1.owner == id || $1.soft ? 0 : $1.overlap(best.box)) }
        placed.append(best.box)
        if best.far {
            // A leader line from the marker to a label placed away from it.
            let lx = min(max(x, best.box.left), best.box.left + best.box.width)
            let ly = min(max(y, best.box.top), best.box.top + best.box.height)
            svg.element("line", [("x1", fmt(x)), ("y1", fmt(y)), ("x2", fmt(lx)), ("y2", fmt(ly)),
                                 ("stroke", "#999999"), ("stroke-width", "0.8"), ("class", "leader")])
        }
        svg.raw(SVGWriter.render("text", [("x", fmt(best.tx)), ("y", fmt(best.ty)), ("font-size", fmt(size)),
                                          ("text-anchor", best.anchor), ("fill", color),
                                          ("font-weight", bold ? "bold" : "normal")] + attributes,
                                 text: text, halo: true))
        return (svg.text.trimmingCharacters(in: .newlines), overlap)
    }

    /// The legend: three columns under the plot (points, roofs, notes).
    private func legend(_ svg: inout SVGWriter) {
        let columns = [plotLeft - 40, plotLeft + 250, plotLeft + 560]
        var x = columns[0]
        var y = legendTop
        svg.open("g", [("class", "legend")])
        svg.element("line", [("x1", fmt(columns[0])), ("y1", fmt(legendTop - 14)), ("x2", fmt(width - 20)), ("y2", fmt(legendTop - 14)),
                             ("stroke", "#dddddd"), ("stroke-width", "1")])
        func column(_ index: Int, _ title: String) {
            x = columns[index]
            y = legendTop
            svg.element("text", [("x", fmt(x)), ("y", fmt(y + 12)), ("font-size", "13.5"), ("font-weight", "bold"), ("fill", "#111111")], text: title)
            y += 30
        }
        func line(_ text: String, size: Double = 12, color: String = "#222222", indent: Double = 30, spacing: Double = 7) {
            svg.element("text", [("x", fmt(x + indent)), ("y", fmt(y + 4)), ("font-size", fmt(size)), ("fill", color)], text: text)
            y += size + spacing
        }

        column(0, "Points")
        let kinds = RooflineKernel.allCases.flatMap { kernel in KernelPass.allCases.map { (kernel, $0) } }
            .filter { kind in report.points.contains { $0.kernel == kind.0 && $0.pass == kind.1 } }
        for (kernel, pass) in kinds {
            let color = Self.color(kernel, pass)
            switch kernel {
            case .attention:
                svg.element("circle", [("cx", fmt(x + 11)), ("cy", fmt(y)), ("r", "6"), ("fill", color), ("stroke", color), ("stroke-width", "2")])
            case .scan:
                svg.element("rect", [("x", fmt(x + 5.5)), ("y", fmt(y - 5.5)), ("width", "11"), ("height", "11"),
                                     ("fill", color), ("stroke", color), ("stroke-width", "2")])
            case .layer:
                svg.element("polygon", [("points", hexagon(x + 11, y, 7)), ("fill", color), ("stroke", color), ("stroke-width", "2")])
            }
            line("\(kernel.rawValue) \(pass.rawValue)")
        }
        svg.element("circle", [("cx", fmt(x + 11)), ("cy", fmt(y)), ("r", "6"), ("fill", "#ffffff"), ("stroke", "#555555"), ("stroke-width", "2")])
        line("hollow: unfused, filled: fused")
        svg.element("line", [("x1", fmt(x)), ("y1", fmt(y)), ("x2", fmt(x + 22)), ("y2", fmt(y)), ("stroke", "#333333"),
                             ("stroke-width", "1.4"), ("marker-end", "url(#arrowhead)")])
        line("unfused → fused, same shape")

        column(1, "Roofs (\(report.threads) thread\(report.threads == 1 ? "" : "s"), \(report.isa.rawValue))")
        func sample(_ attributes: [(String, String)], _ text: String) {
            svg.element("line", [("x1", fmt(x)), ("y1", fmt(y)), ("x2", fmt(x + 22)), ("y2", fmt(y))] + attributes)
            line(text)
        }
        sample([("stroke", "#111111"), ("stroke-width", "2.4")], "compute peak of the ISA in use")
        if report.roofs.compute.count > 1 {
            sample([("stroke", "#6a6a6a"), ("stroke-width", "1.5")], "compute peak of other ISAs")
        }
        sample([("stroke", "#111111"), ("stroke-width", "2.4")], "DRAM bandwidth × intensity")
        sample([("stroke", "#8a8a8a"), ("stroke-width", "1.4")], "L1, L2, L3 bandwidth (reference)")
        if report.roofs.exp.contains(where: { $0.gflops < report.roofs.peakGflops }) {
            sample([("stroke", "#555555"), ("stroke-width", "1.8"), ("stroke-dasharray", "7 4")], "exp limit: exp/s × FLOP per exp")
        }
        if report.roofs.sgemmGflops != nil {
            sample([("stroke", "#555555"), ("stroke-width", "1.3"), ("stroke-dasharray", "2 3")], "OpenBLAS sgemm (reference)")
        }

        column(2, "Notes")
        var notes = [
            "Bound = min(compute peak, exp limit, L3 and DRAM bandwidth × that level's intensity); the L2 roof is reported, not binding (rough model).",
            "x = DRAM intensity for every point; a point bound by L3 has its own intensity at that level (roofline.json).",
        ]
        let hidden = report.roofs.exp.filter { $0.gflops >= report.roofs.peakGflops }
        if !hidden.isEmpty {
            let names = hidden.map { "\($0.kernel.rawValue) \(Self.passShort($0.pass))" }
            let unique = names.enumerated().filter { names.firstIndex(of: $0.element) == $0.offset }.map(\.element)
            notes.append("exp limits above the compute peak, not drawn: \(unique.joined(separator: ", ")).")
        }
        let maxCharacters = Int((width - x - 16) / (11.5 * 0.58))
        for note in notes {
            for text in wrap(note, width: maxCharacters) {
                line(text, size: 11.5, color: "#444444", indent: 0, spacing: 4)
            }
            y += 5
        }
        svg.close("g")
    }

    // MARK: - Styles

    /// Colour of a kernel and pass: blue/purple for attention, green/orange for the scan.
    static func color(_ kernel: RooflineKernel, _ pass: KernelPass) -> String {
        switch (kernel, pass) {
        case (.attention, .forward): "#1f77b4"
        case (.attention, .backward): "#9467bd"
        case (.scan, .forward): "#2ca02c"
        case (.scan, .backward): "#e6700a"
        case (.layer, .forward): "#7f7f7f"
        case (.layer, .backward): "#8c564b"
        }
    }

    /// A darker shade of `color(_:_:)` for text, readable on white.
    static func textColor(_ kernel: RooflineKernel, _ pass: KernelPass) -> String {
        switch (kernel, pass) {
        case (.attention, .forward): "#17537f"
        case (.attention, .backward): "#5f3d85"
        case (.scan, .forward): "#1b6e1b"
        case (.scan, .backward): "#a04b00"
        case (.layer, .forward): "#4d4d4d"
        case (.layer, .backward): "#5a3630"
        }
    }

    /// Colour of a peer by pass: red forward, magenta backward (apart from the lab's blues, greens and orange).
    static func peerColor(_ pass: KernelPass) -> String {
        pass == .forward ? "#d62728" : "#c2188f"
    }

    /// A darker shade of `peerColor(_:)` for text.
    static func peerTextColor(_ pass: KernelPass) -> String {
        pass == .forward ? "#9e1b1c" : "#8a1066"
    }

    static func passShort(_ pass: KernelPass) -> String {
        pass == .forward ? "fwd" : "bwd"
    }

    static func memoryStyle(_ level: MemoryLevel) -> (color: String, width: String) {
        switch level {
        case .dram: ("#111111", "2.4")
        case .l3: ("#6a6a6a", "1.5")
        case .l2: ("#8a8a8a", "1.4")
        case .l1: ("#a5a5a5", "1.4")
        }
    }

    private func decadeLabel(_ decade: Int) -> String {
        switch decade {
        case ..<(-3): "1e\(decade)"
        case ..<0: String(format: "%.\(-decade)f", pow(10, Double(decade)))
        case 0...2: String(Int(pow(10, Double(decade))))
        case 3: "1k"
        case 4: "10k"
        case 5: "100k"
        case 6: "1M"
        default: "1e\(decade)"
        }
    }
}

// MARK: - Geometry

/// The log-log mapping from data to pixels.
private struct Scale {
    let xMin, xMax, yMin, yMax: Double
    let left, top, right, bottom: Double

    init(report: RooflineReport, left: Double, top: Double, right: Double, bottom: Double) {
        let roofs = report.roofs
        var xs = report.points.map(\.intensity).filter { $0.isFinite && $0 > 0 }
        xs += (report.peers ?? []).map(\.intensity).filter { $0.isFinite && $0 > 0 }
        xs += roofs.memory.map(\.ridgeFlopPerByte)
        xs.append(roofs.ridgeFlopPerByte)
        var ys = report.points.map(\.gflops).filter { $0.isFinite && $0 > 0 }
        ys += (report.peers ?? []).map(\.gflops).filter { $0.isFinite && $0 > 0 }
        ys += roofs.compute.map(\.gflops)
        ys += roofs.exp.filter { $0.gflops < roofs.peakGflops }.map(\.gflops)
        if let sgemm = roofs.sgemmGflops, sgemm > 0 { ys.append(sgemm) }
        func bounds(_ values: [Double], padLow: Double, padHigh: Double) -> (Double, Double) {
            guard let low = values.min(), let high = values.max() else { return (0.1, 1000) }
            var lo = floor(log10(low / padLow)), hi = ceil(log10(high * padHigh))
            if hi - lo < 2 { lo -= 1; hi += 1 }
            return (pow(10, lo), pow(10, hi))
        }
        (xMin, xMax) = bounds(xs, padLow: 1.6, padHigh: 1.6)
        // Headroom above the highest roof for its label.
        (yMin, yMax) = bounds(ys, padLow: 1.6, padHigh: 2.2)
        self.left = left
        self.top = top
        self.right = right
        self.bottom = bottom
    }

    var xDecades: [Int] { Array(Int(log10(xMin).rounded())...Int(log10(xMax).rounded())) }
    var yDecades: [Int] { Array(Int(log10(yMin).rounded())...Int(log10(yMax).rounded())) }

    func x(_ value: Double) -> Double {
        guard value.isFinite, value > 0 else { return value > 0 ? right : left }
        let t = (log10(value) - log10(xMin)) / (log10(xMax) - log10(xMin))
        return left + min(max(t, -0.05), 1.05) * (right - left)
    }

    func y(_ value: Double) -> Double {
        guard value.isFinite, value > 0 else { return value > 0 ? top : bottom }
        let t = (log10(value) - log10(yMin)) / (log10(yMax) - log10(yMin))
        return bottom - min(max(t, -0.05), 1.05) * (bottom - top)
    }
}

/// An axis-aligned rectangle in pixels.
private struct Box {
    var left, top, width, height: Double
    /// The point whose marker this is, so its own label may sit close to it.
    var owner: String?
    /// A line rather than text or a marker: a label may cross it (its halo
    /// keeps it readable), at a lower cost.
    var soft = false

    init(left: Double, top: Double, width: Double, height: Double, owner: String? = nil) {
        self.left = left
        self.top = top
        self.width = width
        self.height = height
        self.owner = owner
    }

    init(centerX: Double, centerY: Double, width: Double, height: Double, owner: String? = nil) {
        self.init(left: centerX - width / 2, top: centerY - height / 2, width: width, height: height, owner: owner)
    }

    func overlap(_ other: Box) -> Double {
        let w = min(left + width, other.left + other.width) - max(left, other.left)
        let h = min(top + height, other.top + other.height) - max(top, other.top)
        return w > 0 && h > 0 ? w * h : 0
    }
}

/// A place a label could go: its SVG and the space it takes.
private struct Candidate {
    var svg: String
    var boxes: [Box]
}

/// Splits `text` at spaces into lines of at most `width` characters.
private func wrap(_ text: String, width: Int) -> [String] {
    var lines: [String] = []
    var current = ""
    for word in text.split(separator: " ") {
        if !current.isEmpty, current.count + 1 + word.count > width {
            lines.append(current)
            current = ""
        }
        current += (current.isEmpty ? "" : " ") + word
    }
    if !current.isEmpty { lines.append(current) }
    return lines
}

/// Approximate rendered width of `text` in a sans-serif face (DejaVu Sans
/// averages ~0.6 em per character; narrow letters are common in labels).
private func textWidthEstimate(_ text: String, size: Double) -> Double {
    Double(text.count) * size * 0.58
}

// MARK: - SVG text

/// Builds SVG text with escaped attributes and contents.
private struct SVGWriter {
    private(set) var text = ""
    private var depth: Int

    init(depth: Int = 0) {
        self.depth = depth
    }

    mutating func open(_ name: String, _ attributes: [(String, String)] = []) {
        text += indentation + "<\(name)\(Self.attributes(attributes))>\n"
        depth += 1
    }

    mutating func close(_ name: String) {
        depth -= 1
        text += indentation + "</\(name)>\n"
    }

    mutating func element(_ name: String, _ attributes: [(String, String)] = [], text content: String? = nil) {
        text += indentation + Self.render(name, attributes, text: content) + "\n"
    }

    mutating func raw(_ line: String, indented: Bool = true) {
        text += (indented ? indentation : "") + line + (line.hasSuffix("\n") ? "" : "\n")
    }

    private var indentation: String { String(repeating: "  ", count: depth) }

    /// One element; `halo` draws a white outline under the text so it stays
    /// readable over gridlines and roofs.
    static func render(_ name: String, _ attributes: [(String, String)], text content: String? = nil, halo: Bool = false) -> String {
        var attributes = attributes
        if halo {
            attributes += [("stroke", "#ffffff"), ("stroke-width", "3.5"), ("stroke-linejoin", "round"), ("paint-order", "stroke")]
        }
        guard let content else { return "<\(name)\(Self.attributes(attributes))/>" }
        return "<\(name)\(Self.attributes(attributes))>\(escapeXML(content))</\(name)>"
    }

    private static func attributes(_ attributes: [(String, String)]) -> String {
        attributes.map { " \($0.0)=\"\(escapeXML($0.1))\"" }.joined()
    }
}

/// Escapes the five XML special characters.
func escapeXML(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.count)
    for character in text {
        switch character {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default: out.append(character)
        }
    }
    return out
}

/// A pixel coordinate with two decimals.
private func fmt(_ value: Double) -> String {
    String(format: "%.2f", value)
}

/// A data value in full precision for `data-` attributes.
private func number(_ value: Double) -> String {
    value.isFinite ? String(value) : (value > 0 ? "inf" : "-inf")
}
