/// Phone-book lookup (the copy paper's retrieval test, here trained from
/// scratch): a book of `name : number` entries, then a query for one of its
/// names, answered with that entry's number.
///
/// `$ n1 : d1 | n2 : d2 | ... | ? nq : dq .` with names of 5 letters (unique
/// in a book) and numbers of 10 digits; the answer is the queried number and
/// `.`. The task's length is the number of entries. Tokens: the copy task's
/// 30, the digits 30...39, `:` 40 and `?` 41: a vocabulary of 42.
public struct PhoneBookTask: SequenceTask {
    public static let digit0: Int32 = 30, colon: Int32 = 40, query: Int32 = 41
    public static let vocabulary = 42
    public static let nameLetters = 5, numberDigits = 10

    public let lengths: ClosedRange<Int>
    public var minimumLength: Int { 1 }
    public var vocabulary: Int { Self.vocabulary }

    /// - Throws: `KernelLabError.invalidArgument` unless `1 <= min <= max <= 10000`.
    public init(entries: ClosedRange<Int>) throws {
        guard entries.lowerBound >= 1, entries.upperBound <= 10000 else {
            throw KernelLabError.invalidArgument(argument: "entries", reason: "must lie in 1...10000, got \(entries)")
        }
        lengths = entries
    }

    static let entryTokens = nameLetters + 1 + numberDigits + 1

    public func exampleTokens(length: Int) -> Int { 1 + length * Self.entryTokens + 1 + Self.nameLetters + 1 + Self.numberDigits + 1 }

    public func example(length: Int, rng: inout SplitMix64) -> TaskExample {
        var names: [[Int32]] = [], seen = Set<[Int32]>()
        while names.count < length {
            let name = randomLetters(Self.nameLetters, &rng)
            if seen.insert(name).inserted { names.append(name) }
        }
        let numbers = (0..<length).map { _ in (0..<Self.numberDigits).map { _ in Self.digit0 + Int32(rng.next() % 10) } }
        let asked = Int(rng.next() % UInt64(length))
        var tokens: [Int32] = [CopyTask.bos]
        for (name, number) in zip(names, numbers) { tokens += name + [Self.colon] + number + [CopyTask.separator] }
        tokens += [Self.query] + names[asked] + [Self.colon] + numbers[asked] + [CopyTask.eos]
        return TaskExample(tokens: tokens, answer: (tokens.count - Self.numberDigits - 1)..<tokens.count)
    }
}
